package courier

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"smimegate/internal/smtp"
)

// Action is a DSN recipient's Action field (RFC 3464 section 2.3.3).
type Action string

const (
	ActionFailed    Action = "failed"
	ActionDelayed   Action = "delayed"
	ActionDelivered Action = "delivered"
	ActionRelayed   Action = "relayed"
	ActionExpanded  Action = "expanded"
)

// DSNRecipient is one recipient group of a delivery status report.
type DSNRecipient struct {
	Addr string // Final-Recipient
	// ORcpt is the decoded ORCPT, "type;address" (Rcpt.ORcpt); it becomes
	// the Original-Recipient field (RFC 3464 section 2.3.1).
	ORcpt  string
	Action Action
	Status smtp.EnhancedCode // RFC 3463 code, 5.1.1
	// RemoteMTA is the name of the host that answered (Result.HostName),
	// "" if none did.
	RemoteMTA string
	// Reply is the next hop's reply that decided the outcome (a
	// Result.Reply with Result.Remote), nil if no server replied: it
	// becomes an "smtp" Diagnostic-Code (RFC 3464 section 2.3.6).
	Reply *smtp.Error
	// Diagnostic is our own reason when no server replied: an
	// "X-Smimegate" Diagnostic-Code.
	Diagnostic  string
	LastAttempt time.Time
	// WillRetryUntil is given for delayed recipients (RFC 3464 section
	// 2.3.8).
	WillRetryUntil time.Time
}

// DSNReport is what BuildDSN needs to know about the original message.
type DSNReport struct {
	ReportingMTA string // our host name: From is MAILER-DAEMON@ReportingMTA
	Sender       string // the original envelope sender: the report goes To it
	QueueID      string // our queue id of the original, for the operator
	EnvID        string // RFC 3461 ENVID of the original, decoded
	Arrival      time.Time
	Date         time.Time // of the report; zero means now
	MessageID    string    // without angle brackets; "" makes one
	Recipients   []DSNRecipient
	// Header is the original message's header section (up to, without
	// or with, the empty line): the third part, text/rfc822-headers.
	Header []byte
	// IncludeMessage puts Message, the whole original, in the third part
	// as message/rfc822 instead (RET=FULL). The runner must not set it for
	// a message that was to be encrypted: its body never goes back in
	// the clear.
	IncludeMessage bool
	Message        []byte
}

// ErrNullSender is returned for a report to the null sender: a bounce is
// never bounced (RFC 3461 section 6.2, RFC 5321 section 4.5.5).
var ErrNullSender = errors.New("courier: no delivery status notification to the null sender")

// maxFieldLine is where BuildDSN folds long fields (RFC 5322 section 2.1.1
// recommends 78 characters).
const maxFieldLine = 78

// BuildDSN writes an RFC 3464 delivery status notification: a
// multipart/report (RFC 6522) of a human-readable part, the
// message/delivery-status part and the original header (or message). When
// an address or the header is not ASCII, the RFC 6533 forms are used
// (message/global-delivery-status, message/global-headers), and the report
// then needs SMTPUTF8 for its delivery.
func BuildDSN(r DSNReport) ([]byte, error) {
	if r.Sender == "" {
		return nil, ErrNullSender
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	global := !isASCII(r.Sender)
	for _, rc := range r.Recipients {
		global = global || !isASCII(rc.Addr) || !isASCII(rc.ORcpt)
	}
	third := r.Header
	if r.IncludeMessage {
		third = r.Message
	}
	eightBit := !isASCII(string(third))
	global = global || (!r.IncludeMessage && eightBit)

	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	msgID := r.MessageID
	if msgID == "" {
		msgID = fmt.Sprintf("%s.%s@%s", date.UTC().Format("20060102150405"), randomHex(8), r.ReportingMTA)
	}
	boundary := newBoundary(third)

	var b bytes.Buffer
	allDelayed := true
	for _, rc := range r.Recipients {
		allDelayed = allDelayed && rc.Action == ActionDelayed
	}
	subject := "Undelivered Mail Returned to Sender"
	if allDelayed {
		subject = "Delayed Mail (still being retried)"
	}
	// RFC 3464 section 2 and RFC 3834 section 5: from the postmaster
	// pseudo-user, marked as an automatic reply so that no robot answers.
	field(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+r.ReportingMTA+">")
	field(&b, "To", "<"+r.Sender+">")
	field(&b, "Subject", subject)
	field(&b, "Date", date.Format(time.RFC1123Z))
	field(&b, "Message-ID", "<"+msgID+">")
	field(&b, "Auto-Submitted", "auto-replied")
	field(&b, "MIME-Version", "1.0")
	field(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a MIME-encapsulated message.\r\n\r\n")

	// Part 1: for people.
	b.WriteString("--" + boundary + "\r\n")
	field(&b, "Content-Description", "Notification")
	human := r.humanText(allDelayed)
	if isASCII(human) {
		field(&b, "Content-Type", "text/plain; charset=us-ascii")
	} else {
		field(&b, "Content-Type", "text/plain; charset=utf-8")
		field(&b, "Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\n")
	b.WriteString(human)

	// Part 2: for programs (RFC 3464 section 2.1).
	b.WriteString("\r\n--" + boundary + "\r\n")
	field(&b, "Content-Description", "Delivery report")
	if global {
		field(&b, "Content-Type", "message/global-delivery-status")
		field(&b, "Content-Transfer-Encoding", "8bit")
	} else {
		field(&b, "Content-Type", "message/delivery-status")
	}
	b.WriteString("\r\n")
	r.statusFields(&b, date, global)

	// Part 3: the original header, or the whole original for RET=FULL.
	if len(third) > 0 {
		b.WriteString("\r\n--" + boundary + "\r\n")
		switch {
		case r.IncludeMessage:
			field(&b, "Content-Description", "Undelivered Message")
			field(&b, "Content-Type", "message/rfc822")
			if eightBit {
				field(&b, "Content-Transfer-Encoding", "8bit")
			}
		case global:
			field(&b, "Content-Description", "Undelivered Message Headers")
			field(&b, "Content-Type", "message/global-headers")
			field(&b, "Content-Transfer-Encoding", "8bit")
		default:
			field(&b, "Content-Description", "Undelivered Message Headers")
			field(&b, "Content-Type", "text/rfc822-headers")
		}
		b.WriteString("\r\n")
		b.Write(third)
		if !bytes.HasSuffix(third, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// DSNNeeds tells the queue runner how to send a report that BuildDSN
// made: eightBit when it holds non-ASCII bytes (Message.EightBit, BODY=
// 8BITMIME), smtpUTF8 when it uses the RFC 6533 global types or its
// header is UTF-8 (Message.SMTPUTF8).
func DSNNeeds(report []byte) (eightBit, smtpUTF8 bool) {
	eightBit = !isASCII(string(report))
	if !eightBit {
		return false, false
	}
	header, _, _ := bytes.Cut(report, []byte("\r\n\r\n"))
	smtpUTF8 = !isASCII(string(header)) || bytes.Contains(report, []byte("Content-Type: message/global-"))
	return eightBit, smtpUTF8
}

// check refuses what would make a malformed report, naming the culprit.
func (r *DSNReport) check() error {
	if r.ReportingMTA == "" || !isHostName(r.ReportingMTA) {
		return fmt.Errorf("courier: DSN: reporting MTA %q is not a host name", r.ReportingMTA)
	}
	if !safeAddress(r.Sender) {
		return fmt.Errorf("courier: DSN: sender %q cannot be written in a header", r.Sender)
	}
	if len(r.Recipients) == 0 {
		return errors.New("courier: DSN: no recipients to report on")
	}
	if r.MessageID != "" && (strings.ContainsAny(r.MessageID, "<>\r\n \t") || !isASCII(r.MessageID)) {
		return fmt.Errorf("courier: DSN: message id %q is not a valid msg-id", r.MessageID)
	}
	for i, rc := range r.Recipients {
		if rc.Addr == "" || !safeAddress(rc.Addr) {
			return fmt.Errorf("courier: DSN: recipient %d: address %q cannot be written in a header", i+1, rc.Addr)
		}
		switch rc.Action {
		case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		default:
			return fmt.Errorf("courier: DSN: recipient %s: unknown action %q", rc.Addr, rc.Action)
		}
		if !rc.Status.Valid() {
			return fmt.Errorf("courier: DSN: recipient %s: status %v is not an RFC 3463 code", rc.Addr, [3]int(rc.Status))
		}
		if rc.Action == ActionDelayed && rc.Status[0] != 4 {
			return fmt.Errorf("courier: DSN: recipient %s: delayed with status %s, want 4.x.x", rc.Addr, rc.Status)
		}
		if rc.RemoteMTA != "" && !isHostName(rc.RemoteMTA) {
			return fmt.Errorf("courier: DSN: recipient %s: remote MTA %q is not a host name", rc.Addr, rc.RemoteMTA)
		}
	}
	if r.IncludeMessage && len(r.Message) == 0 {
		return errors.New("courier: DSN: IncludeMessage without the message")
	}
	return nil
}

// statusFields writes the message/delivery-status content: the
// per-message fields, then one group per recipient, each after an empty
// line (RFC 3464 section 2.1).
func (r *DSNReport) statusFields(b *bytes.Buffer, date time.Time, global bool) {
	field(b, "Reporting-MTA", "dns; "+r.ReportingMTA)
	if r.QueueID != "" && isPrintableASCII(r.QueueID) {
		field(b, "X-Smimegate-Queue-ID", r.QueueID)
	}
	if r.EnvID != "" && isPrintableASCII(r.EnvID) {
		field(b, "Original-Envelope-Id", r.EnvID)
	}
	if !r.Arrival.IsZero() {
		field(b, "Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if typ, addr, ok := originalRecipient(rc.ORcpt); ok {
			field(b, "Original-Recipient", typ+"; "+addr)
		}
		field(b, "Final-Recipient", addressType(rc.Addr)+"; "+rc.Addr)
		field(b, "Action", string(rc.Action))
		field(b, "Status", rc.Status.String())
		if rc.RemoteMTA != "" {
			field(b, "Remote-MTA", "dns; "+rc.RemoteMTA)
		}
		if typ, d := rc.diagnostic(); d != "" {
			if !global {
				// message/delivery-status is ASCII (RFC 3464 section
				// 2.1); a UTF-8 reply text loses its non-ASCII runes.
				d = asciiOnly(d)
			}
			field(b, "Diagnostic-Code", typ+"; "+d)
		}
		last := rc.LastAttempt
		if last.IsZero() {
			last = date
		}
		field(b, "Last-Attempt-Date", last.Format(time.RFC1123Z))
		if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
			field(b, "Will-Retry-Until", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
}

// humanText is the first part: what happened, in words.
func (r *DSNReport) humanText(delayed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", r.ReportingMTA)
	if delayed {
		b.WriteString("####################################################################\r\n")
		b.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n")
		b.WriteString("####################################################################\r\n\r\n")
		b.WriteString(wrap("Your message could not be delivered yet to the recipients below. The mail system will keep trying; this report is only for your information.", ""))
	} else {
		b.WriteString(wrap("I'm sorry to have to inform you that your message could not be delivered to one or more recipients. The reasons are given below.", ""))
	}
	b.WriteString("\r\n")
	for _, rc := range r.Recipients {
		line := fmt.Sprintf("<%s>: %s", rc.Addr, rc.Action)
		if _, d := rc.diagnostic(); d != "" {
			if rc.RemoteMTA != "" {
				line += fmt.Sprintf(": host %s said: %s", rc.RemoteMTA, d)
			} else {
				line += ": " + d
			}
		}
		if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
			line += fmt.Sprintf(" (will retry until %s)", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
		b.WriteString(wrap(line, "  "))
		b.WriteString("\r\n")
	}
	return b.String()
}

// wrap breaks text into lines of at most 76 characters at spaces, CRLF
// terminated, continuation lines indented by indent; a single longer word
// stays whole (it is bounded by smtp.MaxReplyText, well inside RFC 5322's
// 998).
func wrap(s, indent string) string {
	var b strings.Builder
	n, start := 0, true
	for _, w := range strings.Fields(s) {
		switch {
		case !start && n+1+len(w) > 76:
			b.WriteString("\r\n" + indent)
			n = len(indent)
		case !start:
			b.WriteByte(' ')
			n++
		}
		start = false
		b.WriteString(w)
		n += len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}

// field writes "Name: value" folded at spaces before maxFieldLine (RFC
// 5322 section 2.2.3); value must hold no CR or LF, which every caller
// guarantees through check and smtp.SanitizeText.
func field(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	n := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		if i > 0 && n+1+len(w) > maxFieldLine {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// originalRecipient splits a decoded ORCPT for the Original-Recipient
// field; ok is false when there is none worth writing.
func originalRecipient(orcpt string) (typ, addr string, ok bool) {
	typ, addr, ok = strings.Cut(orcpt, ";")
	typ, addr = strings.TrimSpace(typ), strings.TrimSpace(addr)
	if !ok || !isAtom(typ) || addr == "" || smtp.SanitizeText(addr) != addr {
		return "", "", false
	}
	if !isASCII(addr) {
		typ = "utf-8"
	}
	return strings.ToLower(typ), addr, true
}

// addressType is rfc822 for ASCII addresses and utf-8 (RFC 6533 section
// 3) for the others.
func addressType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

// diagnostic is the recipient's Diagnostic-Code (RFC 3464 section 2.3.6):
// its diagnostic-type, "smtp" for a server's reply and "X-Smimegate" for
// our own words, and the text, sanitised; "" when there is none.
func (rc *DSNRecipient) diagnostic() (typ, text string) {
	if rc.Reply != nil {
		return "smtp", smtp.SanitizeText(rc.Reply.Error())
	}
	return "X-Smimegate", smtp.SanitizeText(rc.Diagnostic)
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// isHostName accepts the LDH names, dots and IP literals a Reporting-MTA
// or Remote-MTA field may carry.
func isHostName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '_' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// newBoundary makes a boundary that does not occur in the enclosed data
// (RFC 2046 section 5.1.1).
func newBoundary(content []byte) string {
	for {
		b := "=_smimegate_" + randomHex(12)
		if !bytes.Contains(content, []byte(b)) {
			return b
		}
	}
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return '?'
		}
		return r
	}, s)
}
