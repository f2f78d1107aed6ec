package smtpd

import (
	"net"
	"net/textproto"
	"syscall"
	"testing"
	"time"

	"smimegate/internal/spool"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchReceive measures the receiver's cost per accepted message: 10 KB
// messages over one loopback session, each taken by a Handoff that keeps
// it in memory and drops it, so that no disk is in the figure, only the
// dialogue, the strict reader and the envelope. send delivers b.N messages
// over a session. It reports cpu-ns/msg (the whole process: client and
// server) beside ns/op and the allocations.
func benchReceive(b *testing.B, send func(addr string, n int) error) {
	h := newHarness(b, "", Options{
		InMemory: func() int { return 64 << 10 },
		Handoff:  func(env *spool.Envelope, in *spool.Incoming) error { return nil },
	})
	if err := send(h.addr, 10); err != nil { // warm the pools
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	if err := send(h.addr, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// sendMessagesRaw sends n messages over one session with DATA, MAIL,
// RCPT and DATA pipelined, from bytes made once: a client that costs
// next to nothing, so that the figure is mostly the receiver's.
func sendMessagesRaw(addr string, n int) error {
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
	// benchBody has no line that begins with a dot: no stuffing needed.
	cmds := []byte("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	body := []byte(benchBody + ".\r\n")
	for range n {
		if _, err := conn.Write(cmds); err != nil {
			return err
		}
		for _, code := range []int{250, 250, 354} {
			if _, _, err := tp.ReadResponse(code); err != nil {
				return err
			}
		}
		if _, err := conn.Write(body); err != nil {
			return err
		}
		if _, _, err := tp.ReadResponse(250); err != nil {
			return err
		}
	}
	tp.PrintfLine("QUIT")
	return nil
}

// BenchmarkReceiveDATA10KB: DATA, MAIL/RCPT/DATA pipelined. This file
// also runs unchanged on the receiver before issue 17 (go-smtp under
// wireConn), for the comparison of the two in one session.
func BenchmarkReceiveDATA10KB(b *testing.B) {
	benchReceive(b, sendMessagesRaw)
}
