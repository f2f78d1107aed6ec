package smtpd

import (
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/spool"
)

// benchBody is a 10 KB message body.
var benchBody = "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 102)

// sendMessages sends n messages over one SMTP session.
func sendMessages(addr string, n int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return err
	}
	tp.PrintfLine("EHLO bench.example")
	if _, _, err := tp.ReadResponse(250); err != nil {
		return err
	}
	for range n {
		// MAIL, RCPT and DATA pipelined, as RFC 2920 allows.
		tp.PrintfLine("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA")
		for _, code := range []int{250, 250, 354} {
			if _, _, err := tp.ReadResponse(code); err != nil {
				return err
			}
		}
		w := tp.DotWriter()
		w.Write([]byte(benchBody))
		w.Close()
		if _, _, err := tp.ReadResponse(250); err != nil {
			return err
		}
	}
	tp.PrintfLine("QUIT")
	return nil
}

// acceptRate sends n messages over 20 concurrent sessions to a receiver
// with the given sync policy and returns messages per second.
func acceptRate(b *testing.B, policy spool.SyncPolicy, n int) float64 {
	h := newHarnessSync(b, "", Options{}, policy)
	const sessions = 20
	per := max(1, n/sessions)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for range sessions {
		wg.Go(func() {
			if err := sendMessages(h.addr, per); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return float64(per*sessions) / el.Seconds()
}

// BenchmarkAccept10KB20Sessions measures accepted messages per second
// (10 KB each, 20 concurrent SMTP sessions, every one committed with
// fsync) under the grouped policies, against one directory fsync per
// message in the same run. The x-vs-each metric is the speed-up.
func BenchmarkAccept10KB20Sessions(b *testing.B) {
	for _, policy := range []spool.SyncPolicy{spool.SyncGrouped, spool.SyncFilesystem} {
		b.Run(policy.String(), func(b *testing.B) {
			n := max(b.N, 200)
			ref := acceptRate(b, spool.SyncEach, n)
			got := acceptRate(b, policy, n)
			b.ReportMetric(got, "msgs/s")
			b.ReportMetric(ref, "each-msgs/s")
			b.ReportMetric(got/ref, "x-vs-each")
			b.ReportMetric(0, "ns/op")
		})
	}
}
