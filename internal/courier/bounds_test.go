package courier

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxReplyLine)
	many := strings.Repeat("250-x\r\n", maxReplyLines-1) + "250 x\r\n"
	for _, tc := range []struct {
		in    string
		code  int
		lines int
		err   string // part of the error, "" for none
	}{
		{"250 2.0.0 ok\r\n", 250, 1, ""},
		{"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n", 250, 3, ""},
		{"354\r\n", 354, 1, ""},
		{"220 bare LF is read as a line end\n", 220, 1, ""},
		{many, 250, maxReplyLines, ""},
		{"250 " + long[:maxReplyLine-6] + "\r\n", 250, 1, ""},
		{"250 " + long + "\r\n", 0, 0, "longer than 2048 bytes"},
		{many[:len(many)-len("250 x\r\n")] + "250-x\r\n250 x\r\n", 0, 0, "more than 100 lines"},
		{"250-first\r\n550 second\r\n", 0, 0, "codes 250 and 550"},
		{"25O ok\r\n", 0, 0, "not a reply line"},
		{"099 low\r\n", 0, 0, "not a reply line"},
		{"250x\r\n", 0, 0, "not a reply line"},
		{"250-cut short", 0, 0, "unexpected EOF"},
		{"", 0, 0, "unexpected EOF"},
	} {
		r, lines, err := readReplyFrom(bufio.NewReaderSize(strings.NewReader(tc.in), maxReplyLine))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.40q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (r.code != tc.code || len(lines) != tc.lines):
			t.Errorf("%.40q: code %d with %d lines, want %d with %d", tc.in, r.code, len(lines), tc.code, tc.lines)
		}
	}
}

// FuzzReadReply feeds arbitrary bytes to the reply reader: it returns a
// reply within the bounds or an error, never more.
func FuzzReadReply(f *testing.F) {
	f.Add("250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
	f.Add("220 \xff\x00\x1b[31m\r\n")
	f.Add("250-a\r\n550 b\r\n")
	f.Add("354\r\n250 ok\r\n")
	f.Add(strings.Repeat("250-", 600) + "\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), maxReplyLine)
		for range 3 {
			r, lines, err := readReplyFrom(br)
			if err != nil {
				var pe *protocolError
				if !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error %T %v", err, err)
				}
				return
			}
			if r.code < 100 || r.code > 999 || len(lines) == 0 || len(lines) > maxReplyLines {
				t.Fatalf("code %d with %d lines", r.code, len(lines))
			}
			for _, l := range lines {
				if len(l) > maxReplyLine || strings.ContainsAny(l, "\n") {
					t.Fatalf("line %q", l)
				}
			}
			checkLine(t, r.line())
			_ = parseEHLO(lines)
		}
	})
}

// A reply line longer than maxReplyLine is refused before anything else
// is said: the greeting below is 3000 bytes, and no MAIL follows it.
func TestLongReplyLineIsRefused(t *testing.T) {
	t.Parallel()
	d := newDribbler("none")
	d.greeting = "220 " + strings.Repeat("X", 3000) + "\r\n"
	d.start(t)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: d.addr}, newMessage("LL1", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !strings.Contains(res[0].Reply, "reply line longer than 2048 bytes") || !strings.Contains(res[0].Reply, "greeting") {
		t.Errorf("%+v", res[0])
	}
	if cmds := d.commands(); len(cmds) != 0 {
		t.Errorf("the courier went on after the overlong greeting: %q", cmds)
	}
}

// EHLO keywords are case-insensitive (RFC 5321 section 2.4), and only the
// extensions the courier acts on are kept while the connection waits in
// the pool, however many the server lists.
func TestEHLOKeepsOnlyKnownExtensions(t *testing.T) {
	t.Parallel()
	ext := []string{"size 10", "pipelining"}
	for i := 0; i < 90; i++ {
		ext = append(ext, "X-JUNK-"+strings.Repeat("K", i)+" "+strings.Repeat("v", 900))
	}
	d := startDribbler(t, "none", ext...)
	c, _ := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	r := Route{NextHop: d.addr}
	res := deliver(t, c, r, newMessage("EK1", "a@example.org", testBody, "b@example.net"))
	// The server said "size 10": the message is too big for it.
	wantStatus(t, res, Failed)
	if res[0].Enhanced != "5.3.4" {
		t.Errorf("%+v", res[0])
	}
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	dest := c.pool.dests[poolKey(Route{NextHop: d.addr, TLS: TLSNone})]
	if dest == nil || len(dest.idle) != 1 {
		t.Fatal("no idle connection in the pool")
	}
	exts := dest.idle[0].exts
	if len(exts) != 2 || exts["PIPELINING"] != "" || exts["SIZE"] != "10" {
		var kws []string
		for k := range exts {
			kws = append(kws, k[:min(len(k), 12)])
		}
		t.Errorf("pooled session keeps %d extensions: %q", len(exts), kws)
	}
}
