package courier

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"smimegate/internal/smtp"
)

func checkLine(t *testing.T, s string) {
	t.Helper()
	if strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) || len(s) > maxReplyText+100 {
		t.Fatalf("unclean line %q", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			t.Fatalf("control character in %q", s)
		}
	}
}

// FuzzParameters checks that ORCPT, NOTIFY and ENVID encodings never
// produce anything but one printable ASCII word.
func FuzzParameters(f *testing.F) {
	f.Add("rfc822;a+b=c@example.org", "FAILURE,DELAY", "env id")
	f.Add("utf-8;j\u00fcrgen@example.org", "NEVER", "")
	f.Add("x;\r\nRSET", "never,success", "\xff")
	f.Fuzz(func(t *testing.T, orcpt, notify, envid string) {
		for _, p := range []string{orcptParam(orcpt), notifyParam(strings.Split(notify, ",")), smtp.EncodeXtext(envid)} {
			if !isPrintableASCII(p) && p != "" {
				t.Fatalf("parameter %q is not one printable ASCII word", p)
			}
		}
	})
}

// FuzzServerDialogue runs a whole delivery against a server whose every
// reply is fuzzed: the courier must never panic, must return one result per
// recipient, and every result must be well formed.
func FuzzServerDialogue(f *testing.F) {
	f.Add("220 mx ESMTP\r\n", "250-mx\r\n250-DSN\r\n250 SIZE 100\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 2.0.0 queued\r\n")
	f.Add("421 4.3.2 busy\r\n", "", "", "", "", "")
	f.Add("220 mx\r\n", "250 mx\r\n", "550 5.7.1 no\r\n", "", "", "")
	f.Add("220 mx\r\n", "250-mx\r\n250 SMTPUTF8\r\n", "250 ok\r\n", "452 4.2.2 full\r\n", "354\r\n", "")
	f.Add("220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "")
	f.Add("220-a\r\n220-b\r\n220 c\r\n", "250-mx\r\n250 STARTTLS\r\n", "250", "25", "3", "2")
	f.Add("220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "250 no data\r\n", "")
	f.Add("220 mx\r\n", "250-mx\r\n250 SIZE 10\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n")
	f.Add("220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "999 what\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250 PIPELINING\r\n", "250 ok\r\n", "550 5.1.1 no\r\n", "354 go\r\n", "250 ok\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250 PIPELINING\r\n", "451 4.3.0 later\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n", "250 ok\r\n", "250 ok\r\n", "", "250 2.0.0 queued\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n", "250 ok\r\n", "550 5.1.1 no\r\n", "", "554 5.5.1 no valid recipients\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n", "250 ok\r\n", "250 ok\r\n", "", "")
	f.Add("220-a\r\n250 b\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n")
	f.Add("220 mx\r\n", "250-mx\r\n250-pipelining\r\n250 chunking\r\n", "250 ok\r\n", "250 ok\r\n", "", "250 ok\r\n")
	f.Add("220 mx\r\n", "502 5.5.2 no EHLO\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n")
	f.Add("220 "+strings.Repeat("x", 2100)+"\r\n", "", "", "", "", "")
	f.Add("220 mx\r\n", strings.Repeat("250-X\r\n", 120)+"250 x\r\n", "", "", "", "")
	f.Fuzz(checkDialogue)
}

func checkDialogue(t *testing.T, greeting, ehlo, mail, rcpt, data, dot string) {
	{
		c := New(Config{TLS: TLSOpportunistic, CommandTimeout: 50 * time.Millisecond, IdleTimeout: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer c.Close()
		replies := map[string]string{"EHLO": ehlo, "HELO": ehlo, "MAIL": mail, "RCPT": rcpt, "DATA": data, ".": dot, "STARTTLS": "454 4.7.0 no\r\n"}
		c.dial = func(ctx context.Context, addr string) (net.Conn, error) {
			client, server := net.Pipe()
			go scriptedServer(server, greeting, replies)
			return client, nil
		}
		m := newMessage("F", "a@example.org", testBody, "b@example.net", "c@example.net")
		m.SMTPUTF8 = strings.Contains(ehlo, "UTF")
		res := c.Deliver(context.Background(), Route{NextHop: "192.0.2.1:25"}, m)
		checkResults(t, res)
		// The same with the content in memory: BDAT where CHUNKING is
		// offered.
		m.Data, m.Open = []byte(testBody), nil
		res = c.Deliver(context.Background(), Route{NextHop: "192.0.2.1:25"}, m)
		checkResults(t, res)
	}
}

func checkResults(t *testing.T, res []Result) {
	t.Helper()
	{
		if len(res) != 2 {
			t.Fatalf("%d results", len(res))
		}
		for _, r := range res {
			if r.Status < Delivered || r.Status > Failed {
				t.Fatalf("status %v", r.Status)
			}
			if !r.Enhanced.Valid() || r.Enhanced[0] != [...]int{0, 2, 4, 5}[r.Status] {
				t.Fatalf("status %v with enhanced code %q", r.Status, r.Enhanced.String())
			}
			checkLine(t, r.Diagnostic())
			if r.Status == Delivered && (!r.Reply.Positive() || !r.Remote) {
				t.Fatalf("delivered with reply %q", r.Diagnostic())
			}
		}
	}
}

// scriptedServer answers each command with the scripted reply; a reply
// without a final newline is followed by a hang-up, so that a truncated
// reply cannot stall the test until the timeout. Replies are written by a
// goroutine of their own: net.Pipe has no buffer, and a reply longer than
// the client reads must not block the server from reading the client's
// next command, as a TCP socket's buffers would not.
func scriptedServer(c net.Conn, greeting string, replies map[string]string) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	out := make(chan string, 64)
	go func() {
		defer c.Close()
		for s := range out {
			// net.Pipe blocks even on an empty write until the other
			// side reads; a TCP socket would not.
			if s == "" {
				return
			}
			if _, err := io.WriteString(c, s); err != nil {
				return
			}
			if !strings.HasSuffix(s, "\n") {
				return
			}
		}
	}()
	defer close(out)
	send := func(s string) bool {
		out <- s
		return strings.HasSuffix(s, "\n")
	}
	if !send(greeting) {
		return
	}
	br := bufio.NewReader(c)
	inData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if inData {
			if line == ".\r\n" {
				inData = false
				if !send(replies["."]) {
					return
				}
			}
			continue
		}
		verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		verb = strings.ToUpper(verb)
		if verb == "BDAT" {
			// The chunk follows the command; the reply to the last one
			// is the final reply, as the dot's is with DATA.
			size, _, _ := strings.Cut(arg, " ")
			n, err := strconv.Atoi(size)
			if err != nil || n < 0 {
				return
			}
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return
			}
			if !send(replies["."]) {
				return
			}
			continue
		}
		var r string
		switch verb {
		case "RSET":
			r = "250 ok\r\n"
		case "QUIT":
			_ = send("221 bye\r\n")
			return
		default:
			r = replies[verb]
		}
		if verb == "DATA" && strings.HasPrefix(r, "354") {
			inData = true
		}
		if !send(r) {
			return
		}
	}
}

// FuzzBuildDSN gives BuildDSN hostile addresses, diagnostics and headers:
// it either refuses them with an error or writes a report that the strict
// reader accepts, and never lets a diagnostic add a header field.
func FuzzBuildDSN(f *testing.F) {
	f.Add("u@example.net", "rfc822;U@example.net", "550 5.1.1 no such user", "mx.example.net", "Subject: x\r\n", false)
	f.Add("j\u00fcrgen@example.net", "utf-8;J\u00fcrgen@example.net", "451 4.4.1 \u00e9t\u00e9", "", "Subject: caf\u00e9\r\n", false)
	f.Add("u@example.net", "", "x\r\nX-Injected: 1", "mx", "From: a\r\n\r\nbody", true)
	f.Add("u@example.net", "rfc822; ", "--=_smimegate_", "mx", "--=_smimegate_\r\n", true)
	f.Fuzz(func(t *testing.T, addr, orcpt, diag, remote, header string, full bool) {
		r := DSNReport{ReportingMTA: "gw.example.org", Sender: "a@example.org",
			Recipients: []DSNRecipient{{Addr: addr, ORcpt: orcpt, Action: ActionFailed, Status: enh("5.0.0"), RemoteMTA: remote, Diagnostic: diag}},
			Header:     []byte(header), IncludeMessage: full, Message: []byte(header)}
		if full {
			// The same hostile text as a next hop's reply, which
			// BuildDSN must sanitise as well as our own words.
			r.Recipients[0].Reply, r.Recipients[0].Diagnostic = &smtp.Error{Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: diag}, ""
		}
		raw, err := BuildDSN(r)
		if err != nil {
			return
		}
		if !strings.HasSuffix(header, "\r\n") || strings.Contains(strings.ReplaceAll(header, "\r\n", ""), "\n") ||
			strings.Contains(strings.ReplaceAll(header, "\r\n", ""), "\r") || longLine(header) {
			// Only CRLF-clean originals with lines the receiver accepted
			// are ever passed in; the checks below need such a header.
			return
		}
		p, err := parseDSN(raw)
		if err != nil {
			t.Fatalf("%v\n%q", err, raw)
		}
		if len(p.recipients) != 1 {
			t.Fatalf("%d recipient groups", len(p.recipients))
		}
		for k := range p.recipients[0].Map() {
			switch k {
			case "Final-Recipient", "Original-Recipient", "Action", "Status", "Remote-Mta", "Diagnostic-Code", "Last-Attempt-Date":
			default:
				t.Fatalf("unexpected field %q in the recipient group", k)
			}
		}
	})
}

func longLine(s string) bool {
	for _, l := range strings.Split(s, "\r\n") {
		if len(l) > 998 {
			return true
		}
	}
	return false
}
