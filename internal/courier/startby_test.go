package courier

import (
	"net"
	"strings"
	"testing"
	"time"
)

// A next hop that accepts the connection and never greets holds a
// relay-first client only until StartBy: the recipient is deferred, with
// nothing sent and no duplicate possible.
func TestStartByGivesUpBeforeContent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	rawServer(t, l, func(c net.Conn) { time.Sleep(5 * time.Second) })
	c, _ := newCourier(t, Config{TLS: TLSNone})
	m := newMessage("SB1", "a@example.org", testBody, "b@example.net")
	m.StartBy = time.Now().Add(300 * time.Millisecond)
	start := time.Now()
	res := deliver(t, c, Route{NextHop: l.Addr().String()}, m)
	wantStatus(t, res, Deferred)
	if res[0].MaybeDuplicate {
		t.Errorf("nothing was sent, yet a duplicate is said to be possible: %+v", res[0])
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Errorf("Deliver returned after %v: StartBy was not honoured (the greeting timeout was)", waited)
	}
}

// Once the content is on its way, StartBy no longer applies: a next hop
// that takes its time over the final dot still gets the message, and the
// recipient is delivered rather than deferred as a possible duplicate.
func TestStartByDoesNotCutContentOnItsWay(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.dataErr = func([]byte) error {
			time.Sleep(700 * time.Millisecond)
			return nil
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("SB2", "a@example.org", testBody, "b@example.net")
	msg.StartBy = time.Now().Add(300 * time.Millisecond)
	res := deliver(t, c, Route{NextHop: m.addr}, msg)
	wantStatus(t, res, Delivered)
	if got := m.received(); len(got) != 1 || !strings.Contains(string(got[0].data), "Secret body line") {
		t.Fatalf("the next hop did not get the message once: %d messages", len(got))
	}
}
