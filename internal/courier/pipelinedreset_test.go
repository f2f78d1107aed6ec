package courier

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// On a reused connection to a server that offers PIPELINING, the RSET goes
// with the next transaction's commands instead of costing a round trip of
// its own: the server sees MAIL before it has answered RSET.
func TestReusedSessionPipelinesRSET(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	verdict := make(chan string, 1)
	rawServer(t, l, func(c net.Conn) {
		br := bufio.NewReader(c)
		say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
		line := func() string {
			s, err := br.ReadString('\n')
			if err != nil {
				return "ERR " + err.Error()
			}
			return strings.TrimRight(s, "\r\n")
		}
		transaction := func() {
			for {
				cmd := line()
				switch {
				case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
					say("250 2.0.0 ok")
				case cmd == "DATA":
					say("354 go ahead")
					for line() != "." {
					}
					say("250 2.0.0 queued")
					return
				default:
					say("500 5.5.1 unexpected " + cmd)
					return
				}
			}
		}
		say("220 raw.example ESMTP")
		line() // EHLO
		say("250-raw.example")
		say("250 PIPELINING")
		transaction()
		if cmd := line(); cmd != "RSET" {
			verdict <- "expected RSET before the second transaction, got " + cmd
			return
		}
		// Do not answer yet: a client that waits for the reply sends
		// nothing more.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		next := line()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if !strings.HasPrefix(next, "MAIL FROM:") {
			verdict <- "after RSET, before its reply, the client sent " + next
			say("250 2.0.0 reset")
			return
		}
		verdict <- "pipelined"
		say("250 2.0.0 reset")
		say("250 2.0.0 ok")
		transaction()
		line() // QUIT at Close, or EOF
	})
	c, _ := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	r := Route{NextHop: l.Addr().String()}
	wantStatus(t, deliver(t, c, r, newMessage("P1", "a@example.org", testBody, "b@example.net")), Delivered)
	wantStatus(t, deliver(t, c, r, newMessage("P2", "a@example.org", testBody, "b@example.net")), Delivered)
	select {
	case v := <-verdict:
		if v != "pipelined" {
			t.Error(v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the second transaction")
	}
}

// A reused connection that the server closed without a word (no 421) is
// found dead by the pipelined RSET: the message goes on a new connection,
// and the attempt is neither deferred nor logged twice.
func TestSilentlyClosedIdleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, logs := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	r := Route{NextHop: m.addr}
	wantStatus(t, deliver(t, c, r, newMessage("C1", "a@example.org", testBody, "b@example.net")), Delivered)
	// Close the idle connection under the pool, as a server's idle
	// timeout or a restart would, without a reply.
	key := poolKey(Route{NextHop: m.addr, TLS: TLSNone})
	c.pool.mu.Lock()
	for _, s := range c.pool.dests[key].idle {
		s.conn.Conn.Close()
	}
	c.pool.mu.Unlock()
	wantStatus(t, deliver(t, c, r, newMessage("C2", "a@example.org", testBody, "b@example.net")), Delivered)
	if n := m.conns.Load(); n != 2 {
		t.Errorf("server saw %d connections, want 2 (the dead one replaced)", n)
	}
	if n := strings.Count(logs.String(), `"queue_id":"C2"`); n != 1 {
		t.Errorf("%d log lines for C2, want 1:\n%s", n, logs)
	}
}
