package courier

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// inMemory makes a message whose content is given as Data, as the gateway
// gives a message relayed first.
func inMemory(id, body string, rcpts ...string) *Message {
	m := newMessage(id, "a@example.org", body, rcpts...)
	m.Open = nil
	m.Data = []byte(body)
	return m
}

// With CHUNKING and PIPELINING at the server, content in memory goes as
// "BDAT n LAST" right after the envelope, in the same write, unstuffed: the
// server reads the whole transaction before it answers anything.
func TestBDATSendsTheTransactionInOneGo(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	got := make(chan string, 1)
	rawServer(t, l, func(c net.Conn) {
		br := bufio.NewReader(c)
		line := func() string {
			s, _ := br.ReadString('\n')
			return strings.TrimRight(s, "\r\n")
		}
		fmt.Fprintf(c, "220 raw.example ESMTP\r\n")
		line()
		fmt.Fprintf(c, "250-raw.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
		var cmds []string
		for {
			cmd := line()
			cmds = append(cmds, cmd)
			if strings.HasPrefix(cmd, "BDAT ") {
				break
			}
			if cmd == "" || cmd == "DATA" {
				got <- "no BDAT: " + strings.Join(cmds, " | ")
				return
			}
		}
		f := strings.Fields(cmds[len(cmds)-1])
		n, _ := strconv.Atoi(f[1])
		if len(f) != 3 || f[2] != "LAST" {
			got <- "not a single LAST chunk: " + cmds[len(cmds)-1]
			return
		}
		content := make([]byte, n)
		if _, err := io.ReadFull(br, content); err != nil {
			got <- "short chunk: " + err.Error()
			return
		}
		// Only now answer: a client waiting for replies would have
		// stalled before sending the content.
		fmt.Fprintf(c, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as B1\r\n")
		got <- strings.Join(cmds, " | ") + "\n" + string(content)
		line()
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: l.Addr().String()}, inMemory("B1", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].Diagnostic() != "250 2.0.0 queued as B1" {
		t.Errorf("result reply %q, want the reply to BDAT", res[0].Diagnostic())
	}
	select {
	case s := <-got:
		cmds, content, _ := strings.Cut(s, "\n")
		if !strings.HasPrefix(cmds, "MAIL FROM:<a@example.org>") || !strings.Contains(cmds, "RCPT TO:<b@example.net>") || !strings.HasSuffix(cmds, fmt.Sprintf("BDAT %d LAST", len(testBody))) {
			t.Errorf("commands: %s", cmds)
		}
		if content != testBody {
			t.Errorf("content %q, want it unchanged (no dot-stuffing with BDAT)", content)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server got nothing")
	}
}

// Against a real CHUNKING server (go-smtp): per-recipient outcomes stay
// right, and what arrives is byte for byte what DATA would have delivered.
func TestBDATRecipientOutcomesAndBytes(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(refuseGoneAndFull)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, inMemory("B2", testBody, "gone@example.net", "ok@example.net", "full@example.net"))
	wantStatus(t, res, Failed, Delivered, Deferred)
	got := m.received()
	if len(got) != 1 || string(got[0].data) != testBody || len(got[0].rcpts) != 1 {
		t.Fatalf("server got %d messages; first %+v", len(got), got)
	}
	// Refused at the end: the reply to BDAT decides.
	m.set(func(m *mta) {
		m.rcptErr = nil
		m.dataErr = func([]byte) error {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"}
		}
	})
	res = deliver(t, c, Route{NextHop: m.addr}, inMemory("B3", testBody, "b@example.net"))
	wantStatus(t, res, Failed)
	if res[0].Enhanced.String() != "5.7.1" {
		t.Errorf("refused at BDAT: %+v", res[0])
	}
}

// Content that DATA would have to repair (a bare LF, no final CRLF) is
// not sent raw with BDAT: it goes through DATA and arrives repaired.
func TestUncleanContentFallsBackToDATA(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	body := "Subject: x\r\n\r\nbare\nlf\r\nno final crlf"
	wantStatus(t, deliver(t, c, Route{NextHop: m.addr}, inMemory("B4", body, "b@example.net")), Delivered)
	if got := m.received(); len(got) != 1 || string(got[0].data) != "Subject: x\r\n\r\nbare\r\nlf\r\nno final crlf\r\n" {
		t.Fatalf("server got %q", got[0].data)
	}
}

// A connection lost after the content left with BDAT may have delivered
// the message: the result says so.
func TestBDATLostAfterContentMayDuplicate(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) { m.dropData = true })
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, inMemory("B5", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "duplicate") {
		t.Errorf("lost after the content: %+v", res[0])
	}
}

func TestCRLFClean(t *testing.T) {
	for in, want := range map[string]bool{
		"a\r\nb\r\n": true, "\r\n": true, "": false, "a\r\nb": false,
		"a\nb\r\n": false, "a\rb\r\n": false, "a\r\n\r": false, "\n": false, "a\r\r\n": false,
	} {
		if got := crlfClean([]byte(in)); got != want {
			t.Errorf("crlfClean(%q) = %v, want %v", in, got, want)
		}
	}
}

type sizedBody struct{ *io.SectionReader }

func (sizedBody) Close() error { return nil }

// Content read from a spool file (a reader that knows its size) is
// announced with MAIL ... SIZE= (RFC 1870), and refused here, before it is
// sent, when the server announced a smaller limit.
func TestSpoolContentAnnouncesItsSize(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("S1", "a@example.org", testBody, "b@example.net")
	msg.Size = 0
	msg.Open = func() (io.ReadCloser, error) {
		return sizedBody{io.NewSectionReader(strings.NewReader(testBody), 0, int64(len(testBody)))}, nil
	}
	wantStatus(t, deliver(t, c, Route{NextHop: m.addr}, msg), Delivered)
	if got := m.received(); len(got) != 1 || got[0].mopts.Size != int64(len(testBody)) {
		t.Fatalf("MAIL FROM SIZE = %+v, want %d", got, len(testBody))
	}

	small := startMTA(t, func(s *smtp.Server) { s.MaxMessageBytes = 10 })
	msg.Size = 0
	res := deliver(t, c, Route{NextHop: small.addr}, msg)
	wantStatus(t, res, Failed)
	if res[0].Enhanced.String() != "5.3.4" || len(small.received()) != 0 {
		t.Errorf("over the server's SIZE: %+v, server got %d messages", res[0], len(small.received()))
	}
}
