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
// and returns messages per second.
func acceptRate(b *testing.B, n int) float64 {
	h := newHarness(b, "", Options{})
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

// spoolRate commits n messages of the same size from 20 goroutines
// straight into a spool, without SMTP: the ceiling the receiver works
// under, whose directory fsyncs it shares.
func spoolRate(b *testing.B, n int) float64 {
	sp, err := spool.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	const writers = 20
	per := max(1, n/writers)
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range per {
				in, err := sp.NewMessage()
				if err != nil {
					b.Error(err)
					return
				}
				in.Write([]byte(benchBody))
				if err := in.Commit(&spool.Envelope{Sender: "a@example.net", Recipients: []spool.Recipient{{Addr: "b@example.org"}}, Client: "local", Arrival: time.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(per*writers) / time.Since(start).Seconds()
}

// BenchmarkAccept10KB20Sessions measures accepted messages per second
// (10 KB each, 20 concurrent SMTP sessions, every one committed with
// fsync) against the spool's own commit rate for the same messages in the
// same run (the grouping of directory fsyncs is measured against one fsync
// per commit in internal/spool). The x-of-spool metric is the share of the
// spool's rate that the receiver reaches.
func BenchmarkAccept10KB20Sessions(b *testing.B) {
	n := max(b.N, 200)
	ref := spoolRate(b, n)
	got := acceptRate(b, n)
	b.ReportMetric(got, "msgs/s")
	b.ReportMetric(ref, "spool-commits/s")
	b.ReportMetric(got/ref, "x-of-spool")
	b.ReportMetric(0, "ns/op")
}
