package courier

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRelayShapeCPU measures what a message relayed first costs the
// courier: content in memory (about 14 KB, a 10 KB message sealed), two
// recipients, a kept connection to a server that pipelines and offers
// CHUNKING, so one write (RSET, MAIL, RCPT, BDAT LAST and the content) and
// its replies. It reports the process's CPU time per message
// (getrusage(2), user and system), which a machine busy with other work
// inflates far less than wall time. The in-process server's share is in
// the figure; it is the same server in any two builds compared, so a
// difference between them is the courier's. Run it from two trees and
// compare with benchstat.
func BenchmarkRelayShapeCPU(b *testing.B) {
	m := startMTA(b, nil)
	c, _ := newCourier(b, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	route := Route{NextHop: m.addr}
	body := testBody + strings.Repeat("MIIDxwYLKoZIhvcNAQkQARegggO2MIIDsgIBADGCAWkwggFlAgEAME0wOTEhMB8GA1UECxMYUy9N\r\n", 180)
	msg := newMessage("R", "a@example.org", body, "b@example.net", "c@example.net")
	msg.Data = []byte(body)
	ctx := context.Background()
	if r := c.Deliver(ctx, route, msg); r[0].Status != Delivered {
		b.Fatalf("%+v", r[0])
	}
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if r := c.Deliver(ctx, route, msg); r[0].Status != Delivered {
			b.Fatalf("%+v", r[0])
		}
	}
	b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
