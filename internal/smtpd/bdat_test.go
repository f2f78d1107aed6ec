package smtpd

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// bdat sends one chunk and returns the reply.
func (c *rawClient) bdat(chunk string, last bool) (int, string) {
	c.t.Helper()
	cmd := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		cmd += " LAST"
	}
	c.send(cmd + "\r\n" + chunk)
	return c.reply()
}

// stored returns the message of the one queued envelope without our
// Received field (the first field, three or four lines).
func storedBody(t *testing.T, h *harness, id string) string {
	t.Helper()
	data, err := h.sp.ReadData(id, "")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !strings.HasPrefix(s, "Received: from ") {
		t.Fatalf("message %s does not begin with our Received field:\n%q", id, s)
	}
	// The Received field ends at the first line that does not begin with
	// a tab.
	i := 0
	for {
		j := strings.Index(s[i:], "\r\n")
		i += j + 2
		if i >= len(s) || s[i] != '\t' {
			break
		}
	}
	return s[i:]
}

// TestBDATByteExact: a message cut into chunks at every kind of place (a
// CRLF split between two chunks, a leading dot, a line that looks like the
// DATA terminator, a chunk of one octet) is stored exactly as sent, with
// no dot-unstuffing, and its envelope is DATA's.
func TestBDATByteExact(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_line_length = 100000", Options{})
	msg := "From: <a@example.net>\r\nTo: <b@example.org>\r\nSubject: chunked\r\n\r\n" +
		".leading dot stays\r\n..two dots stay\r\n.\r\nMAIL FROM:<smuggled@evil.example>\r\n" + strings.Repeat("x", 3*readBuffer) + "\r\nend\r\n"
	cuts := [][]int{
		{len(msg)},                        // one chunk
		{1, len(msg) - 1},                 // one octet, then the rest
		{strings.Index(msg, "\r\n") + 1},  // CR | LF
		{10, 20, 30, 40, 50, 60, 70, 80},  // many small ones
		{readBuffer - 1, readBuffer + 1},  // around the read buffer
		{strings.Index(msg, "\r\n.\r\n")}, // before the would-be terminator
	}
	for i, cut := range cuts {
		c := h.session(untrustedIP)
		c.cmd("MAIL FROM:<a@example.net> BODY=8BITMIME", 250)
		c.cmd("RCPT TO:<b@example.org> NOTIFY=FAILURE", 250)
		rest := msg
		for _, n := range cut {
			n = min(n, len(rest))
			if code, text := c.bdat(rest[:n], false); code != 250 || !strings.Contains(text, fmt.Sprintf("%d octets received", n)) {
				t.Fatalf("cut %d: chunk of %d: %d %s", i, n, code, text)
			}
			rest = rest[n:]
		}
		code, text := c.bdat(rest, true)
		if code != 250 || !strings.Contains(text, "queued as") {
			t.Fatalf("cut %d: LAST: %d %s", i, code, text)
		}
		c.cmd("QUIT", 221)
	}
	list := h.queued()
	if len(list) != len(cuts) {
		t.Fatalf("%d queued, want %d", len(list), len(cuts))
	}
	for _, env := range list {
		if got := storedBody(t, h, env.ID); got != msg {
			t.Errorf("%s: stored %d bytes, sent %d; first difference near %d", env.ID, len(got), len(msg), firstDiff(got, msg))
		}
		if env.Body != "8BITMIME" || env.Sender != "a@example.net" || len(env.Recipients) != 1 || env.Recipients[0].Notify[0] != "FAILURE" {
			t.Errorf("envelope %+v", env)
		}
	}
	if !strings.Contains(h.logs.String(), "verb=BDAT") {
		t.Errorf("the transaction log does not name BDAT:\n%s", h.logs.String())
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestBDATLast: a message in a single BDAT LAST, one ended by BDAT 0
// LAST, and an empty one (BDAT 0 LAST alone) are all accepted; a last line
// without CRLF gets one, as DATA's terminator would have given it.
func TestBDATLast(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.session(untrustedIP)
	want := map[string]string{}
	send := func(marker string, chunks ...string) {
		t.Helper()
		c.cmd("MAIL FROM:<a@example.net>", 250)
		c.cmd("RCPT TO:<b@example.org>", 250)
		for i, ch := range chunks {
			code, text := c.bdat(ch, i == len(chunks)-1)
			if i < len(chunks)-1 && code != 250 {
				t.Fatalf("%s: chunk %d: %d %s", marker, i, code, text)
			}
			if i == len(chunks)-1 {
				if code != 250 || !strings.Contains(text, "queued as ") {
					t.Fatalf("%s: LAST: %d %s", marker, code, text)
				}
				want[text[strings.LastIndex(text, " ")+1:]] = marker
			}
		}
	}
	send("single", message("single"))
	send("zero-last", message("zero-last")[:20], message("zero-last")[20:], "")
	send("empty", "")
	send("no-crlf", "Subject: no final line end\r\n\r\nlast line")
	for _, env := range h.queued() {
		got := storedBody(t, h, env.ID)
		var exp string
		switch want[env.ID] {
		case "single", "zero-last":
			exp = message(want[env.ID])
		case "empty":
			exp = ""
		case "no-crlf":
			exp = "Subject: no final line end\r\n\r\nlast line\r\n"
		default:
			t.Fatalf("queued %s, which no 250 named", env.ID)
		}
		if got != exp {
			t.Errorf("%s: stored %q, want %q", want[env.ID], got, exp)
		}
	}
	if n := len(h.queued()); n != 4 {
		t.Errorf("%d queued, want 4", n)
	}
}

// TestBDATMixed: DATA after BDAT in one transaction is refused (RFC 3030
// section 3), and so is RCPT; after RSET the transaction may use DATA; a
// BDAT after a refused BDAT is refused, its octets read, until RSET.
func TestBDATMixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 100", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	if code, _ := c.bdat("Subject: part\r\n", false); code != 250 {
		t.Fatalf("first chunk: %d", code)
	}
	if msg := c.cmd("DATA", 503); !strings.Contains(msg, "DATA after BDAT") {
		t.Errorf("DATA after BDAT: %q", msg)
	}
	c.cmd("RCPT TO:<c@example.org>", 503)
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(message("after-rset") + ".\r\n")
	c.expect(250)

	// A refused chunk (a bare LF), then more chunks: each is refused with
	// 503, and read, so that the NOOP after them is a command.
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	if code, msg := c.bdat("Subject: bare\nLF\r\n", false); code != 550 || !strings.Contains(msg, "bare CR or LF") {
		t.Fatalf("bare LF chunk: %d %s", code, msg)
	}
	if code, msg := c.bdat("NOOP\r\n", false); code != 503 || !strings.Contains(msg, "send RSET") {
		t.Errorf("BDAT after a refused BDAT: %d %s", code, msg)
	}
	if code, _ := c.bdat("QUIT\r\n", true); code != 503 {
		t.Errorf("BDAT LAST after a refused BDAT: %d", code)
	}
	c.cmd("DATA", 503)
	c.cmd("NOOP", 250)
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	if code, _ := c.bdat(message("after-refusal"), true); code != 250 {
		t.Errorf("BDAT after RSET: %d", code)
	}
	// BDAT with no transaction, and with no recipient: refused, read.
	if code, _ := c.bdat("RSET\r\n", true); code != 503 {
		t.Errorf("BDAT without MAIL: %d", code)
	}
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<x@evil.example>", 554)
	if code, _ := c.bdat("RSET\r\n", true); code != 554 {
		t.Errorf("BDAT without recipients: %d", code)
	}
	c.cmd("NOOP", 250)
	if n := len(h.queued()); n != 2 {
		t.Errorf("%d queued, want 2", n)
	}
}

// TestBDATOverSize: chunk sizes count against max_message_bytes before a
// chunk is read. A chunk that would take the message over is refused with
// 552 5.3.4 and its octets read and thrown away; the transaction takes no
// more chunks; a chunk larger than a whole message is refused without
// being read, and the connection closed. SIZE at MAIL is checked as for
// DATA.
func TestBDATOverSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_message_bytes = 2000\nerror_limit = 100", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net> SIZE=2001", 552)
	c.cmd("MAIL FROM:<a@example.net> SIZE=1900", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	if code, _ := c.bdat("Subject: big\r\n\r\n"+strings.Repeat("x", 1480)+"\r\n", false); code != 250 {
		t.Fatalf("first chunk: %d", code)
	}
	big := strings.Repeat("NOOP\r\n", 100) // 600 octets: 2100 in all
	if code, msg := c.bdat(big, false); code != 552 || !strings.HasPrefix(msg, "5.3.4 ") {
		t.Errorf("chunk over the limit: %d %s", code, msg)
	}
	if code, _ := c.bdat("x\r\n", true); code != 503 {
		t.Errorf("BDAT after the over-size chunk: %d", code)
	}
	c.cmd("NOOP", 250) // in step: none of the NOOPs in the chunk ran
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	if code, _ := c.bdat(message("fits"), true); code != 250 {
		t.Errorf("a message within the limit: %d", code)
	}
	// A chunk larger than any message: refused unread, and the end.
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.send("BDAT 1000000000\r\n")
	if code, msg := c.reply(); code != 552 || !strings.HasPrefix(msg, "5.3.4 ") {
		t.Errorf("chunk larger than max_message_bytes: %d %s", code, msg)
	}
	if !c.closed() {
		t.Error("still open after a chunk that cannot be read within bounds")
	}
	// A chunk size that is not a number: the stream cannot be followed.
	d := h.session(untrustedIP)
	d.cmd("MAIL FROM:<a@example.net>", 250)
	d.cmd("RCPT TO:<b@example.org>", 250)
	d.cmd("BDAT 12x", 501)
	if !d.closed() {
		t.Error("still open after a BDAT without a chunk size")
	}
	if n := len(h.queued()); n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
}

// TestBDATSmuggling: the content rules hold across chunk boundaries. A CR
// that ends one chunk and an LF that begins the next are a CRLF; a CR
// ending a chunk before anything else, an LF beginning one, a CR ending
// the LAST chunk, and a NUL anywhere are refused; the Received count and
// the header bound see fields split across chunks.
func TestBDATSmuggling(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000\nmax_header_bytes = 10000", Options{})
	received := strings.Repeat("Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n", 101)
	cases := []struct {
		name   string
		chunks []string
		code   int
		why    string
	}{
		{"CR|LF", []string{"Subject: x\r", "\nbody\r\n"}, 250, ""},
		{"CR|x", []string{"Subject: x\r", "body\r\n"}, 550, "bare CR or LF"},
		{"x|LF", []string{"Subject: x", "\nbody\r\n"}, 550, "bare CR or LF"},
		{"LF.CRLF", []string{"Subject: x\r\n\r\nbody\n.\r\n", "MAIL FROM:<e@evil.example>\r\n"}, 550, "bare CR or LF"},
		{"CR at LAST", []string{"Subject: x\r\n\r\nbody\r"}, 550, "bare CR or LF"},
		{"CR|empty LAST", []string{"Subject: x\r\n\r\nbody\r", ""}, 550, "bare CR or LF"},
		{"NUL", []string{"Subject: x\r\n\r\nbo", "\x00dy\r\n"}, 550, "NUL character at byte 16 of the BDAT stream"},
		{"Received split", []string{received[:4], received[4:]}, 554, "too many Received"},
		{"Received split in the name", chunksOf(received, 7), 554, "too many Received"},
		{"header split", chunksOf("Subject: x\r\n"+strings.Repeat("X-F: "+strings.Repeat("h", 60)+"\r\n", 200)+"\r\nbody\r\n", 100), 552, "header section"},
	}
	for _, tc := range cases {
		c := h.session(untrustedIP)
		c.cmd("MAIL FROM:<a@example.net>", 250)
		c.cmd("RCPT TO:<b@example.org>", 250)
		var code int
		var msg string
		for i, ch := range tc.chunks {
			code, msg = c.bdat(ch, i == len(tc.chunks)-1)
			if code != 250 {
				break
			}
		}
		if code != tc.code || !strings.Contains(msg, tc.why) {
			t.Errorf("%s: %d %s, want %d ... %s", tc.name, code, msg, tc.code, tc.why)
		}
		c.cmd("RSET", 250)
		c.cmd("NOOP", 250)
		c.cmd("QUIT", 221)
	}
	if n := len(h.queued()); n != 1 {
		t.Errorf("%d queued, want only the CR|LF one", n)
	}
}

// chunksOf cuts s into chunks of n octets.
func chunksOf(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// TestBDATPipelined: MAIL, RCPT and every chunk in one write, twice over
// in one session, as RFC 2920 and RFC 3030 section 4 allow; each command
// gets its reply, in order, and both messages arrive whole.
func TestBDATPipelined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.session(untrustedIP)
	var b strings.Builder
	for _, m := range []string{"one", "two"} {
		msg := message("pipelined-" + m)
		fmt.Fprintf(&b, "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 10\r\n%sBDAT %d LAST\r\n%s", msg[:10], len(msg)-10, msg[10:])
	}
	b.WriteString("QUIT\r\n")
	c.send(b.String())
	for range 2 {
		c.expect(250)
		c.expect(250)
		c.expect(250)
		if msg := c.expect(250); !strings.Contains(msg, "queued as") {
			t.Errorf("LAST: %q", msg)
		}
	}
	c.expect(221)
	list := h.queued()
	if len(list) != 2 {
		t.Fatalf("%d queued", len(list))
	}
	for _, env := range list {
		if got := storedBody(t, h, env.ID); !strings.HasPrefix(got, "From: <a@example.net>\r\n") || !strings.HasSuffix(got, ".\r\n") {
			t.Errorf("stored %q", got)
		}
	}
}

// TestBDATMinDataRate: a chunk trickled in is cut as a DATA stream would
// be, and nothing is queued.
func TestBDATMinDataRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "command_timeout = \"2s\"\nmin_data_rate = 1000", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.send("BDAT 100000 LAST\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if _, err := c.conn.Write([]byte("slow line\r\n")); err != nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	code, msg := c.reply()
	if code != 421 || !strings.Contains(msg, "1000 bytes/s") {
		t.Errorf("slow chunk: %d %s", code, msg)
	}
	c.conn.Close()
	<-done
	if n := len(h.queued()); n != 0 {
		t.Errorf("%d queued", n)
	}
}

// TestBDATHooks: the Checker and Handoff see for a BDAT message the
// envelope they see for DATA, and the client's 250 comes only after
// Handoff has returned nil: a refusal from either is the reply to LAST.
func TestBDATHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []*spool.Envelope
	var bodies []string
	var order []string
	h := newHarness(t, "", Options{
		Check: func(env *spool.Envelope) error {
			if env.Sender == "refuse@example.net" {
				return smtp.NewError(554, smtp.EnhancedCode{5, 7, 1}, "refused by the check")
			}
			return nil
		},
		InMemory: func() int { return 1 << 20 },
		Handoff: func(env *spool.Envelope, in *spool.Incoming) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, env)
			order = append(order, "handoff "+env.Sender)
			if env.Sender == "later@example.net" {
				return smtp.NewError(451, smtp.EnhancedCode{4, 3, 0}, "try later")
			}
			data, err := in.ReadAll()
			if err != nil {
				return err
			}
			bodies = append(bodies, string(data))
			return in.Commit(env)
		},
	})
	for _, chunked := range []bool{false, true} {
		for _, sender := range []string{"ok@example.net", "refuse@example.net", "later@example.net"} {
			c := h.session(untrustedIP)
			c.cmd("MAIL FROM:<"+sender+"> RET=HDRS ENVID=e+2B1", 250)
			c.cmd("RCPT TO:<b@example.org> ORCPT=rfc822;b@example.org", 250)
			var code int
			if chunked {
				c.bdat(message("hooks")[:7], false)
				code, _ = c.bdat(message("hooks")[7:], true)
			} else {
				c.cmd("DATA", 354)
				c.send(message("hooks") + ".\r\n")
				code, _ = c.reply()
			}
			want := map[string]int{"ok@example.net": 250, "refuse@example.net": 554, "later@example.net": 451}[sender]
			if code != want {
				t.Errorf("chunked=%v sender %s: %d, want %d", chunked, sender, code, want)
			}
			mu.Lock()
			order = append(order, "reply "+sender)
			mu.Unlock()
			c.cmd("QUIT", 221)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("Handoff saw %d envelopes, want 4", len(seen))
	}
	for i := range 2 {
		d, b := seen[i], seen[i+2]
		if d.Sender != b.Sender || d.RET != b.RET || d.EnvID != b.EnvID ||
			d.Recipients[0].ORcpt != b.Recipients[0].ORcpt || d.Size != b.Size || d.Trusted != b.Trusted || d.Body != b.Body {
			t.Errorf("DATA envelope %+v, BDAT envelope %+v", d, b)
		}
	}
	if !bytes.Equal([]byte(storedTail(bodies[0])), []byte(storedTail(bodies[1]))) {
		t.Errorf("DATA and BDAT stored different messages:\n%q\n%q", bodies[0], bodies[1])
	}
	want := "handoff ok@example.net,reply ok@example.net,reply refuse@example.net,handoff later@example.net,reply later@example.net"
	if got := strings.Join(order, ","); got != want+","+want {
		t.Errorf("order %s", got)
	}
}

// storedTail is a stored message after its Received field's id line.
func storedTail(s string) string {
	if i := strings.Index(s, "Subject:"); i >= 0 {
		return s[i-len("From: <a@example.net>\r\nTo: <b@example.org>\r\n"):]
	}
	return s
}

// FuzzChunkChecker checks the BDAT content rules against the obvious
// reading of them on the whole stream, however it is cut into chunks: it
// is refused for a bare CR or LF exactly when one is in the stream, for a
// NUL exactly when one is (at its offset), and otherwise stored as sent,
// with a CRLF added to a last line that lacks one.
func FuzzChunkChecker(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\r", "a\n", "\r\n\r\n", "x\x00y\r\n", "Received: a\r\nReceived: b\r\n\r\nbody", "\r\r\n", ""} {
		f.Add([]byte(s), []byte{1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte) {
		var out bytes.Buffer
		k := chunkChecker{lim: smtp.Limits{MaxBytes: 1 << 40, MaxLine: 1 << 30, MaxHeader: 1 << 30, MaxReceived: 1 << 30}, dst: &out, inHeader: true}
		rest := in
		for _, c := range cuts {
			n := min(int(c), len(rest))
			k.write(rest[:n])
			rest = rest[n:]
		}
		if len(rest) > 0 {
			k.write(rest)
		}
		k.end()
		bare := false
		for i, c := range in {
			if c == '\r' && (i+1 >= len(in) || in[i+1] != '\n') || c == '\n' && (i == 0 || in[i-1] != '\r') {
				bare = true
			}
		}
		nul := bytes.IndexByte(in, 0)
		isNUL := k.reject != nil && strings.HasPrefix(k.reject.Message, smtp.NULRefusal)
		switch {
		case bare && nul >= 0:
			if k.reject != smtp.ErrBareNewline && !isNUL {
				t.Fatalf("%q: bare and NUL, refused with %v", in, k.reject)
			}
		case bare:
			if k.reject != smtp.ErrBareNewline {
				t.Fatalf("%q %v: bare CR/LF, refused with %v", in, cuts, k.reject)
			}
		case nul >= 0:
			if !isNUL || !strings.Contains(k.reject.Message, fmt.Sprintf(" at byte %d of ", nul)) {
				t.Fatalf("%q: NUL at %d, refused with %v", in, nul, k.reject)
			}
		case k.reject != nil:
			t.Fatalf("%q %v: clean stream refused with %v", in, cuts, k.reject)
		}
		if k.reject != nil {
			return
		}
		want := string(in)
		if len(in) > 0 && !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		if out.String() != want {
			t.Fatalf("%q %v: stored %q", in, cuts, out.String())
		}
	})
}

// TestBDATOverTLS: chunks are read from the TLS stream as from the clear
// one, pipelined, and stored exactly; the envelope records TLS.
func TestBDATOverTLS(t *testing.T) {
	t.Parallel()
	cert, key, pool := testTLS(t)
	h := newHarness(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), Options{})
	c := h.session(untrustedIP)
	c.startTLS(pool)
	if ehlo := c.cmd("EHLO client.example.net", 250); !strings.Contains(ehlo, "CHUNKING") {
		t.Fatalf("EHLO under TLS does not offer CHUNKING:\n%s", ehlo)
	}
	msg := message("tls-bdat")
	c.send(fmt.Sprintf("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 11\r\n%sBDAT %d LAST\r\n%s", msg[:11], len(msg)-11, msg[11:]))
	for range 3 {
		c.expect(250)
	}
	c.expect(250)
	list := h.queued()
	if len(list) != 1 || !list[0].TLS {
		t.Fatalf("queued %+v", list)
	}
	if got := storedBody(t, h, list[0].ID); got != msg {
		t.Errorf("stored %q, sent %q", got, msg)
	}
}

// TestHookPositiveReplyIsNoAcceptance: a Checker or Handoff that returns an
// *smtp.Error with a 2xx code has not taken the message; the client gets a
// 451, not that 250, by DATA and by BDAT alike, and nothing is queued.
func TestHookPositiveReplyIsNoAcceptance(t *testing.T) {
	t.Parallel()
	fake := smtp.NewError(250, smtp.EnhancedCode{2, 0, 0}, "OK queued as nothing")
	for _, opts := range []Options{
		{Check: func(*spool.Envelope) error { return fake }},
		{Handoff: func(*spool.Envelope, *spool.Incoming) error { return fake }},
	} {
		h := newHarness(t, "", opts)
		c := h.session(untrustedIP)
		if code, msg := sendData(c, message("positive")); code != 451 {
			t.Errorf("DATA: %d %s, want 451", code, msg)
		}
		c.cmd("MAIL FROM:<a@example.net>", 250)
		c.cmd("RCPT TO:<b@example.org>", 250)
		if code, msg := c.bdat(message("positive"), true); code != 451 {
			t.Errorf("BDAT LAST: %d %s, want 451", code, msg)
		}
		if n := len(h.queued()); n != 0 {
			t.Errorf("%d queued", n)
		}
	}
}
