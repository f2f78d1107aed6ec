package courier

import (
	"context"
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// BenchmarkDeliver measures one message with two recipients to an
// in-process server over loopback, three ways, interleaved in the same run
// so that a busy machine slows them alike:
//
//   - reuse:     the courier as configured by default (connection reuse),
//     the content read through Message.Open and sent with DATA,
//   - bdat:      the same with the content in memory (Message.Data), which
//     goes with BDAT, as a message relayed first does,
//   - fresh:     the courier made to open a new connection per message,
//   - reference: net/smtp.SendMail, the standard library's one-shot client.
//
// It reports each in ns/msg and the ratios reference/reuse, fresh/reuse
// and reuse/bdat (above 1: the second named is faster).
func BenchmarkDeliver(b *testing.B) {
	m := startMTA(b, nil)
	reuse, _ := newCourier(b, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	fresh, _ := newCourier(b, Config{TLS: TLSNone, MaxReuseTime: time.Nanosecond})
	route := Route{NextHop: m.addr}
	body := testBody + strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 300)
	msg := newMessage("B", "a@example.org", body, "b@example.net", "c@example.net")
	inMem := newMessage("B", "a@example.org", body, "b@example.net", "c@example.net")
	inMem.Data = []byte(body)
	ctx := context.Background()
	var tReuse, tBDAT, tFresh, tRef time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if r := reuse.Deliver(ctx, route, msg); r[0].Status != Delivered {
			b.Fatalf("reuse: %+v", r[0])
		}
		tb := time.Now()
		if r := reuse.Deliver(ctx, route, inMem); r[0].Status != Delivered {
			b.Fatalf("bdat: %+v", r[0])
		}
		t1 := time.Now()
		if r := fresh.Deliver(ctx, route, msg); r[0].Status != Delivered {
			b.Fatalf("fresh: %+v", r[0])
		}
		t2 := time.Now()
		if err := smtp.SendMail(m.addr, nil, "a@example.org", []string{"b@example.net", "c@example.net"}, []byte(body)); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		tReuse += tb.Sub(t0)
		tBDAT += t1.Sub(tb)
		tFresh += t2.Sub(t1)
		tRef += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tReuse.Nanoseconds())/n, "reuse-ns/msg")
	b.ReportMetric(float64(tFresh.Nanoseconds())/n, "fresh-ns/msg")
	b.ReportMetric(float64(tRef.Nanoseconds())/n, "sendmail-ns/msg")
	b.ReportMetric(float64(tRef)/float64(tReuse), "sendmail/reuse")
	b.ReportMetric(float64(tFresh)/float64(tReuse), "fresh/reuse")
	b.ReportMetric(float64(tBDAT.Nanoseconds())/n, "bdat-ns/msg")
	b.ReportMetric(float64(tReuse)/float64(tBDAT), "reuse/bdat")
}

// BenchmarkBuildDSN measures a two-recipient bounce against the
// reference of copying the same number of bytes, which is the least any
// builder must do; the ratio says how much the formatting costs on top.
func BenchmarkBuildDSN(b *testing.B) {
	r := sampleReport()
	out, err := BuildDSN(r)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, len(out))
	var tBuild, tCopy time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := BuildDSN(r); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		dst = append(dst[:0], out...)
		tBuild += t1.Sub(t0)
		tCopy += time.Since(t1)
	}
	_ = dst
	b.ReportMetric(float64(tBuild.Nanoseconds())/float64(b.N), "build-ns/op")
	b.ReportMetric(float64(tBuild)/float64(max(tCopy, 1)), "build/copy")
}
