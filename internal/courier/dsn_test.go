package courier

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
)

// parsedDSN is a delivery status notification read back strictly.
type parsedDSN struct {
	header     textproto.Header
	human      string
	perMessage textproto.Header
	recipients []textproto.Header
	thirdType  string
	third      []byte
}

// parseDSN reads a report the way a strict receiver would: RFC 6522
// multipart/report with report-type=delivery-status, three parts, and a
// RFC 3464 status part whose required fields are all present and well
// formed. It returns an error naming the first violation.
func parseDSN(raw []byte) (*parsedDSN, error) {
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		return nil, errors.New("bare LF in the report")
	}
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			return nil, fmt.Errorf("line %d is %d bytes long", i+1, len(line))
		}
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	p := &parsedDSN{header: e.Header.Header}
	for _, f := range []string{"From", "To", "Date", "Message-Id", "Subject", "Auto-Submitted", "Mime-Version"} {
		if e.Header.Get(f) == "" {
			return nil, fmt.Errorf("header field %s missing", f)
		}
	}
	if _, err := mail.ParseDate(e.Header.Get("Date")); err != nil {
		return nil, fmt.Errorf("Date: %w", err)
	}
	if _, err := mail.ParseAddress(e.Header.Get("From")); err != nil {
		return nil, fmt.Errorf("From: %w", err)
	}
	if !strings.HasPrefix(strings.ToUpper(e.Header.Get("From")), "MAIL DELIVERY SYSTEM <MAILER-DAEMON@") {
		return nil, fmt.Errorf("From is %q", e.Header.Get("From"))
	}
	mt, params, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return nil, fmt.Errorf("Content-Type %q (%v)", e.Header.Get("Content-Type"), err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil, errors.New("not multipart")
	}
	var parts []*message.Entity
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("part %d: %w", len(parts)+1, err)
		}
		body, err := io.ReadAll(part.Body)
		if err != nil {
			return nil, err
		}
		part.Body = bytes.NewReader(body)
		parts = append(parts, part)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("%d parts, want 2 or 3", len(parts))
	}
	if t, _, _ := parts[0].Header.ContentType(); t != "text/plain" {
		return nil, fmt.Errorf("first part is %s", t)
	}
	human, _ := io.ReadAll(parts[0].Body)
	p.human = string(human)
	st, _, _ := parts[1].Header.ContentType()
	if st != "message/delivery-status" && st != "message/global-delivery-status" {
		return nil, fmt.Errorf("second part is %s", st)
	}
	status, _ := io.ReadAll(parts[1].Body)
	if err := p.readStatus(status); err != nil {
		return nil, fmt.Errorf("delivery-status: %w", err)
	}
	if len(parts) == 3 {
		p.thirdType, _, _ = parts[2].Header.ContentType()
		p.third, _ = io.ReadAll(parts[2].Body)
	}
	return p, nil
}

// readStatus reads RFC 3464 section 2.1: per-message fields, then
// per-recipient groups, separated by empty lines.
func (p *parsedDSN) readStatus(b []byte) error {
	br := bufio.NewReader(bytes.NewReader(b))
	var groups []textproto.Header
	for {
		// Skip the empty lines between groups.
		peek, err := br.Peek(2)
		if err == nil && string(peek) == "\r\n" {
			_, _ = br.Discard(2)
			continue
		}
		if err != nil && len(peek) == 0 {
			break
		}
		h, err := textproto.ReadHeader(br)
		if err != nil && err != io.EOF {
			return err
		}
		groups = append(groups, h)
		if err == io.EOF {
			break
		}
	}
	if len(groups) < 2 {
		return fmt.Errorf("%d field groups, want per-message and at least one recipient", len(groups))
	}
	p.perMessage = groups[0]
	if !strings.HasPrefix(p.perMessage.Get("Reporting-MTA"), "dns; ") {
		return fmt.Errorf("Reporting-MTA %q", p.perMessage.Get("Reporting-MTA"))
	}
	for i, g := range groups[1:] {
		if !typed(g.Get("Final-Recipient")) {
			return fmt.Errorf("recipient %d: Final-Recipient %q", i+1, g.Get("Final-Recipient"))
		}
		switch g.Get("Action") {
		case "failed", "delayed", "delivered", "relayed", "expanded":
		default:
			return fmt.Errorf("recipient %d: Action %q", i+1, g.Get("Action"))
		}
		if !validStatus(g.Get("Status")) {
			return fmt.Errorf("recipient %d: Status %q", i+1, g.Get("Status"))
		}
		for _, f := range []string{"Original-Recipient", "Remote-MTA", "Diagnostic-Code"} {
			if v := g.Get(f); v != "" && !typed(v) {
				return fmt.Errorf("recipient %d: %s %q", i+1, f, v)
			}
		}
		for _, f := range []string{"Last-Attempt-Date", "Will-Retry-Until"} {
			if v := g.Get(f); v != "" {
				if _, err := mail.ParseDate(v); err != nil {
					return fmt.Errorf("recipient %d: %s: %w", i+1, f, err)
				}
			}
		}
		p.recipients = append(p.recipients, g)
	}
	return nil
}

// typed checks "type; value" with an atom type.
func typed(v string) bool {
	typ, val, ok := strings.Cut(v, ";")
	return ok && isAtom(strings.TrimSpace(typ)) && strings.TrimSpace(val) != ""
}

const origHeader = "From: Alice <a@example.org>\r\nTo: b@example.net\r\nSubject: quarterly figures\r\nMessage-ID: <m1@example.org>\r\n"

func sampleReport() DSNReport {
	when := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return DSNReport{
		ReportingMTA: "gw.example.org",
		Sender:       "a@example.org",
		QueueID:      "Q123",
		EnvID:        "env-1",
		Arrival:      when.Add(-time.Hour),
		Date:         when,
		Recipients: []DSNRecipient{
			{Addr: "gone@example.net", ORcpt: "rfc822;Gone@example.net", Action: ActionFailed, Status: enh("5.1.1"),
				RemoteMTA: "mx.example.net", Reply: serverReply("550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table"), LastAttempt: when},
			{Addr: "slow@example.net", Action: ActionFailed, Status: enh("4.4.1"),
				Diagnostic: "connect to mx.example.net[192.0.2.1]:25: connection refused", LastAttempt: when},
		},
		Header:  []byte(origHeader + "\r\n"),
		Message: []byte(origHeader + "\r\nThe secret figures\r\n"),
	}
}

func TestBuildDSNIsAValidDeliveryStatusReport(t *testing.T) {
	raw, err := BuildDSN(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if got := p.header.Get("To"); got != "<a@example.org>" {
		t.Errorf("To %q", got)
	}
	if p.header.Get("Auto-Submitted") != "auto-replied" || !strings.HasSuffix(p.header.Get("Message-Id"), "@gw.example.org>") {
		t.Errorf("header:\n%s", raw)
	}
	if p.perMessage.Get("Original-Envelope-Id") != "env-1" || p.perMessage.Get("X-Smimegate-Queue-Id") != "Q123" || p.perMessage.Get("Arrival-Date") == "" {
		t.Errorf("per-message fields: %v", p.perMessage)
	}
	if len(p.recipients) != 2 {
		t.Fatalf("%d recipient groups", len(p.recipients))
	}
	g := p.recipients[0]
	for f, want := range map[string]string{
		"Final-Recipient":    "rfc822; gone@example.net",
		"Original-Recipient": "rfc822; Gone@example.net",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.example.net",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
		"Last-Attempt-Date":  "Sat, 28 Nov 2026 10:00:00 +0000",
	} {
		if got := g.Get(f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	g = p.recipients[1]
	if g.Get("Diagnostic-Code") != "X-Smimegate; connect to mx.example.net[192.0.2.1]:25: connection refused" || g.Get("Remote-MTA") != "" || g.Get("Original-Recipient") != "" {
		t.Errorf("second recipient: %v", g)
	}
	if p.thirdType != "text/rfc822-headers" || string(p.third) != origHeader+"\r\n" {
		t.Errorf("third part %s:\n%q", p.thirdType, p.third)
	}
	if bytes.Contains(raw, []byte("secret figures")) {
		t.Error("the body of the original is in the report")
	}
	if e, u := DSNNeeds(raw); e || u {
		t.Errorf("DSNNeeds = %v, %v for an ASCII report", e, u)
	}
	if !strings.Contains(p.human, "<gone@example.net>: failed: host mx.example.net said: 550 5.1.1") {
		t.Errorf("human part:\n%s", p.human)
	}
	if p.header.Get("Subject") != "Undelivered Mail Returned to Sender" {
		t.Errorf("Subject %q", p.header.Get("Subject"))
	}
}

func TestBuildDSNWholeMessageAndDelay(t *testing.T) {
	r := sampleReport()
	r.IncludeMessage = true
	r.Recipients = []DSNRecipient{{Addr: "slow@example.net", Action: ActionDelayed, Status: enh("4.4.1"),
		Reply: serverReply("451 4.4.1 later"), RemoteMTA: "mx.example.net", WillRetryUntil: r.Date.Add(96 * time.Hour)}}
	raw, err := BuildDSN(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if p.thirdType != "message/rfc822" || string(p.third) != string(r.Message) {
		t.Errorf("third part %s: %q", p.thirdType, p.third)
	}
	if p.recipients[0].Get("Will-Retry-Until") == "" || p.header.Get("Subject") != "Delayed Mail (still being retried)" {
		t.Errorf("delay report:\n%s", raw)
	}
	if !strings.Contains(p.human, "WARNING ONLY") {
		t.Errorf("human part does not say it is a warning:\n%s", p.human)
	}
}

func TestBuildDSNNeverToTheNullSender(t *testing.T) {
	r := sampleReport()
	r.Sender = ""
	if _, err := BuildDSN(r); !errors.Is(err, ErrNullSender) {
		t.Errorf("err = %v, want ErrNullSender", err)
	}
}

func TestBuildDSNRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(r *DSNReport)
		want string
	}{
		{"sender injection", func(r *DSNReport) { r.Sender = "a@b>\r\nBcc: x@y" }, "sender"},
		{"no recipients", func(r *DSNReport) { r.Recipients = nil }, "no recipients"},
		{"bad action", func(r *DSNReport) { r.Recipients[0].Action = "lost" }, `"lost"`},
		{"bad status", func(r *DSNReport) { r.Recipients[0].Status = badStatus }, "not an RFC 3463 code"},
		{"no status", func(r *DSNReport) { r.Recipients[0].Status = noStatus }, "not an RFC 3463 code"},
		{"delayed with 5xx", func(r *DSNReport) { r.Recipients[0].Action = ActionDelayed }, "want 4.x.x"},
		{"recipient injection", func(r *DSNReport) { r.Recipients[1].Addr = "x\r\nFrom: evil" }, "recipient 2"},
		{"remote MTA", func(r *DSNReport) { r.Recipients[0].RemoteMTA = "mx; evil" }, "remote MTA"},
		{"reporting MTA", func(r *DSNReport) { r.ReportingMTA = "" }, "reporting MTA"},
		{"message id", func(r *DSNReport) { r.MessageID = "<x@y>" }, "message id"},
		{"full without message", func(r *DSNReport) { r.IncludeMessage, r.Message = true, nil }, "IncludeMessage"},
	} {
		r := sampleReport()
		tc.mod(&r)
		_, err := BuildDSN(r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one that mentions %q", tc.name, err, tc.want)
		}
	}
}

func TestBuildDSNSanitisesHostileDiagnostics(t *testing.T) {
	r := sampleReport()
	hostile := strings.Repeat("very long reply ", 200) + "\r\nX-Injected: yes\x00\x1b[31m"
	r.Recipients[0].Reply.Message = hostile
	r.Recipients[1].Diagnostic = hostile
	raw, err := BuildDSN(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if p.recipients[0].Get("X-Injected") != "" || bytes.Contains(raw, []byte("\r\nX-Injected")) || bytes.Contains(raw, []byte{0x1b}) {
		t.Error("the diagnostic injected a field or a control character")
	}
	for i := range 2 {
		if d := p.recipients[i].Get("Diagnostic-Code"); len(d) > maxReplyText+20 {
			t.Errorf("diagnostic of %d bytes is not bounded", len(d))
		}
	}
}

func TestBuildDSNForUTF8Addresses(t *testing.T) {
	r := sampleReport()
	r.Recipients[0].Addr = "j\u00fcrgen@example.net"
	r.Recipients[0].ORcpt = "utf-8;J\u00fcrgen@example.net"
	raw, err := BuildDSN(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	g := p.recipients[0]
	if g.Get("Final-Recipient") != "utf-8; j\u00fcrgen@example.net" || g.Get("Original-Recipient") != "utf-8; J\u00fcrgen@example.net" {
		t.Errorf("%v", g)
	}
	if e, u := DSNNeeds(raw); !e || !u {
		t.Errorf("DSNNeeds = %v, %v for a UTF-8 report", e, u)
	}
	if !bytes.Contains(raw, []byte("Content-Type: message/global-delivery-status")) || !bytes.Contains(raw, []byte("Content-Type: message/global-headers")) {
		t.Errorf("RFC 6533 types not used:\n%s", raw)
	}
}

// TestBounceFromARealRefusal runs the whole path the queue runner will
// take: a server refuses a recipient, and its result becomes a report.
func TestBounceFromARealRefusal(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.rcptErr = func(string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<u@example.net>: no such user"}
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, newMessage("QB", "a@example.org", testBody, "u@example.net"))
	wantStatus(t, res, Failed)
	hdr, _, _ := strings.Cut(testBody, "\r\n\r\n")
	raw, err := BuildDSN(DSNReport{
		ReportingMTA: "gw.example.org", Sender: "a@example.org", QueueID: "QB",
		Recipients: []DSNRecipient{{Addr: res[0].Rcpt, Action: ActionFailed, Status: res[0].Enhanced,
			RemoteMTA: res[0].HostName, Reply: &res[0].Reply}},
		Header: []byte(hdr + "\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if got := p.recipients[0].Get("Diagnostic-Code"); got != "smtp; 550 5.1.1 <u@example.net>: no such user" {
		t.Errorf("Diagnostic-Code %q", got)
	}
	if got := p.recipients[0].Get("Remote-MTA"); got != "dns; 127.0.0.1" {
		t.Errorf("Remote-MTA %q", got)
	}
	if bytes.Contains(raw, []byte("Secret body")) {
		t.Error("the body went into the bounce")
	}
}
