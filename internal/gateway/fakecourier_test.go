package gateway

import (
	"bytes"
	"context"
	"io"
	"slices"
	"sync"
	"time"

	"smimegate/internal/courier"
	"smimegate/internal/smtp"
)

// outcome is what the fake courier answers for one recipient: each is a
// result the real courier gives (internal/courier's own tests pin down when
// it gives which), so that the gateway's decisions can be driven through
// every branch without a network.
type outcome int

const (
	// delivered: 250 after the final dot.
	delivered outcome = iota
	// deferred4xx: the next hop answered 451 4.3.0.
	deferred4xx
	// failed5xx: the next hop refused the recipient for good, 550 5.1.1.
	failed5xx
	// connLost: no server answered (connection refused or reset before
	// the content): deferred with no reply code, which hopHealth counts.
	connLost
	// maybeDup: the final dot went out and no reply came before FinishBy
	// (the relay-first bound): deferred, flagged as a possible duplicate.
	maybeDup
	// timedOut: queue.relay_first_timeout passed before the content
	// started (StartBy): deferred with nothing sent.
	timedOut
)

func (o outcome) String() string {
	return [...]string{"delivered", "deferred 4xx", "failed 5xx", "connection lost", "maybe duplicate", "timed out"}[o]
}

// result makes the courier.Result of o for rcpt from host.
func (o outcome) result(rcpt, host string) courier.Result {
	r := courier.Result{Rcpt: rcpt, Host: host, HostName: "mx.fake.test", TLS: "none"}
	// The shapes the courier gives: a next hop's reply with Remote, or
	// the courier's own reply for what no server answered (ownReply:
	// 4.4.x for a lost connection or a time limit).
	hop := func(st courier.Status, code int, enh smtp.EnhancedCode, text string) {
		r.Status, r.Remote = st, true
		r.Reply = smtp.Error{Code: code, Enhanced: enh, Message: text}
		r.Enhanced = enh
	}
	own := func(enh smtp.EnhancedCode, text string) {
		r.Status = courier.Deferred
		r.Reply = smtp.Error{Code: 421, Enhanced: enh, Message: text}
		r.Enhanced = enh
	}
	switch o {
	case delivered:
		hop(courier.Delivered, 250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as FAKE")
	case deferred4xx:
		hop(courier.Deferred, 451, smtp.EnhancedCode{4, 3, 0}, "partner's server busy")
	case failed5xx:
		hop(courier.Failed, 550, smtp.EnhancedCode{5, 1, 1}, "user unknown")
	case connLost:
		own(smtp.EnhancedCode{4, 4, 2}, "connection lost: connection reset by peer")
		r.HostName = ""
	case maybeDup:
		own(smtp.EnhancedCode{4, 4, 2}, "no reply after the end of data (possible duplicate)")
		r.MaybeDuplicate = true
	case timedOut:
		own(smtp.EnhancedCode{4, 4, 1}, "timeout: the content did not start within queue.relay_first_timeout")
	}
	return r
}

// offer is one transaction the gateway asked the fake courier for.
type offer struct {
	route courier.Route
	from  string
	rcpts []string
	data  []byte
	// startBy and finishBy are the message's relay-first bounds (zero for
	// an attempt from the queue).
	startBy, finishBy time.Time
}

// fakeCourier records what the gateway asks it to send and answers each
// recipient with its scripted outcome (delivered when the script is
// silent). Verify answers the same way, without recording.
type fakeCourier struct {
	mu       sync.Mutex
	script   map[string]outcome
	offers   []offer
	verifies int // Verify calls
}

func newFakeCourier(script map[string]outcome) *fakeCourier {
	if script == nil {
		script = map[string]outcome{}
	}
	return &fakeCourier{script: script}
}

func (f *fakeCourier) Deliver(ctx context.Context, r courier.Route, m *courier.Message) []courier.Result {
	data := m.Data
	if data == nil && m.Open != nil {
		// A version in the spool: read as the real courier would.
		rc, err := m.Open()
		if err != nil {
			out := make([]courier.Result, len(m.Recipients))
			for i, rc := range m.Recipients {
				out[i] = courier.Result{Rcpt: rc.Addr, Status: courier.Deferred, Enhanced: smtp.EnhancedCode{4, 3, 0},
					Reply: smtp.Error{Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "cannot read the message: " + err.Error()}}
			}
			return out
		}
		data, _ = io.ReadAll(rc)
		rc.Close()
	}
	o := offer{route: r, from: m.From, data: bytes.Clone(data), startBy: m.StartBy, finishBy: m.FinishBy}
	out := make([]courier.Result, len(m.Recipients))
	f.mu.Lock()
	for i, rc := range m.Recipients {
		o.rcpts = append(o.rcpts, rc.Addr)
		out[i] = f.script[rc.Addr].result(rc.Addr, r.NextHop)
	}
	f.offers = append(f.offers, o)
	f.mu.Unlock()
	return out
}

func (f *fakeCourier) Verify(ctx context.Context, r courier.Route, addr string) courier.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	return f.script[addr].result(addr, r.NextHop)
}

// sent returns the transactions asked for so far.
func (f *fakeCourier) sent() []offer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.offers)
}
