package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// dialogueSeeds are command streams the fuzzer starts from: whole
// transactions with DATA and BDAT, pipelined, and the known ways to break
// a receiver (smuggling, chunks that lie about their size, junk, TLS
// injection without TLS, overlong lines).
var dialogueSeeds = []string{
	"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
	"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 5\r\nab\r\ncBDAT 0 LAST\r\nQUIT\r\n",
	"EHLO x\r\nMAIL FROM:<a@example.net> SIZE=10\r\nRCPT TO:<b@example.org> NOTIFY=NEVER\r\nBDAT 3 LAST\r\nx\r\r\n",
	"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 99999999\r\n",
	"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 2\r\n\r\rBDAT 1 LAST\r\n\nDATA\r\nRSET\r\n",
	"EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\n.\r\nMAIL FROM:<e@evil.example>\r\n.\r\n",
	"HELO x\r\nSTARTTLS\r\nRSET\r\nNOOP\r\nVRFY a\r\nEXPN b\r\nHELP\r\nXYZZY\r\nBDAT\r\nBDAT x LAST\r\n",
	"EHLO x\r\nRCPT TO:<Postmaster>\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster> ORCPT=rfc822;a+2Bb\r\nBDAT 0 LAST\r\n",
	"EHLO " + strings.Repeat("x", 3000) + "\r\nEHLO y\r\n\x00\r\nNOOP\rNOOP\r\n",
}

// FuzzDialogue drives a live Server over loopback with random command
// streams, chunk payloads included. Whatever the stream: the server does
// not panic, every reply line has RFC 5321's form, the connection ends
// once the client has sent everything and closed its side, its goroutine
// and slot are given back (no leak: the live count is zero after each
// input), and nothing over max_message_bytes is ever queued.
func FuzzDialogue(f *testing.F) {
	for _, s := range dialogueSeeds {
		f.Add([]byte(s))
	}
	const maxBytes = 4096
	h := newHarness(f, "max_message_bytes = 4096\nerror_limit = 20\njunk_command_limit = 20\ncommand_timeout = \"5s\"", Options{})
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			nc.Write(in)
			nc.(*net.TCPConn).CloseWrite()
		}()
		r := bufio.NewReader(nc)
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF && line == "" {
				break
			}
			if err != nil {
				t.Fatalf("%q: reading replies: %v (after %q)", in, err, line)
			}
			if !validReplyLine(line) {
				t.Fatalf("%q: malformed reply line %q", in, line)
			}
		}
		<-sent
		deadline := time.Now().Add(10 * time.Second)
		for {
			h.srv.mu.Lock()
			n := len(h.srv.conns)
			h.srv.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q: %d connection(s) still live after the client left", in, n)
			}
			time.Sleep(time.Millisecond)
		}
		list, err := h.sp.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range list {
			if env.Size > maxBytes+1024 { // our Received field on top
				t.Fatalf("%q: queued %d bytes, over the limit of %d", in, env.Size, maxBytes)
			}
			h.sp.Remove(env.ID)
		}
	})
}

// validReplyLine: three digits from 2xx to 5xx, then a space or a hyphen,
// printable text, CRLF (RFC 5321 section 4.2).
func validReplyLine(l string) bool {
	if len(l) < 6 || !strings.HasSuffix(l, "\r\n") || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' || (l[3] != ' ' && l[3] != '-') {
		return false
	}
	body := l[4 : len(l)-2]
	return !strings.ContainsAny(body, "\r\n\x00")
}

// TestDialogueNoGoroutineLeak runs every seed of FuzzDialogue, and the
// same streams cut short at every few bytes, against a server, shuts it
// down, and counts goroutines: they are back where they were.
func TestDialogueNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		h := newHarness(t, "max_message_bytes = 4096", Options{})
		for _, s := range dialogueSeeds {
			for cut := 0; cut <= len(s); cut += max(1, len(s)/7) {
				nc, err := net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				nc.SetDeadline(time.Now().Add(20 * time.Second))
				nc.Write([]byte(s[:cut]))
				nc.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, nc)
				nc.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		h.sp.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines before, %d after Shutdown:\n%s", before, runtime.NumGoroutine(), bytes.TrimSpace(buf[:n]))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
