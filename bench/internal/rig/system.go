package rig

import (
	"time"
)

// System is one relay path under test in the throughput benchmarks: where
// the load goes in, the sink where it comes out, and how to read the CPU
// time the path's processes have used.
type System struct {
	Name string
	Addr string
	Sink *Sink
	CPU  func() (time.Duration, error)
}

// RunSource sends n messages of a size-byte body with smtp-source over
// sessions parallel sessions and returns the time from the start of
// smtp-source until the sink holds all of them, and the CPU time the
// system used meanwhile.
func (s *System) RunSource(h *Harness, n, sessions, size int) (wall, cpu time.Duration) {
	want := s.Sink.Count() + n
	cpu0, err := s.CPU()
	if err != nil {
		h.Fatalf("%v", err)
	}
	start := time.Now()
	SMTPSource(h, s.Addr, n, sessions, size, "alice@example.org", "bob@example.net")
	end, err := s.Sink.WaitCount(want, 5*time.Minute)
	if err != nil {
		h.Fatalf("%s: %v", s.Name, err)
	}
	cpu1, err := s.CPU()
	if err != nil {
		h.Fatalf("%v", err)
	}
	return end.Sub(start), cpu1 - cpu0
}

// Ms returns d in milliseconds, for printing.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
