package courier

import (
	"strings"
	"testing"
	"time"
)

// A reply line longer than smtp.MaxReplyLine is refused before anything else
// is said: the greeting below is 3000 bytes, and no MAIL follows it.
func TestLongReplyLineIsRefused(t *testing.T) {
	t.Parallel()
	d := newDribbler("none")
	d.greeting = "220 " + strings.Repeat("X", 3000) + "\r\n"
	d.start(t)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: d.addr}, newMessage("LL1", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !strings.Contains(res[0].Diagnostic(), "reply line longer than 2048 bytes") || !strings.Contains(res[0].Diagnostic(), "greeting") {
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
	if res[0].Enhanced.String() != "5.3.4" {
		t.Errorf("%+v", res[0])
	}
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	dest := c.pool.dests[poolKey(Route{NextHop: d.addr, TLS: TLSNone})]
	if dest == nil || len(dest.idle) != 1 {
		t.Fatal("no idle connection in the pool")
	}
	exts := dest.idle[0].exts
	if exts.Len() != 2 || !exts.Has("PIPELINING") || exts.Param("SIZE") != "10" {
		t.Errorf("pooled session keeps %d extensions", exts.Len())
	}
}
