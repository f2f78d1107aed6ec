package spool

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eachSync is the reference the grouped directory sync is measured
// against: one directory fsync per commit, without grouping, as a spool
// without groupsync.go would do.
type eachSync struct {
	dir    string
	rounds atomic.Uint64
}

func (e *eachSync) Sync() error {
	e.rounds.Add(1)
	return syncDir(e.dir)
}

func (e *eachSync) Rounds() uint64 { return e.rounds.Load() }

// commitRate commits n 10 KB messages from 20 goroutines, with the spool's
// grouped directory sync or, with each, the reference, and returns commits
// per second and directory syncs per commit.
func commitRate(b *testing.B, each bool, n int) (rate, syncsPerCommit float64) {
	s, err := OpenWith(b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if each {
		s.queueSync = &eachSync{dir: s.queueDir}
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	const workers = 20
	per := max(1, n/workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range per {
				in, err := s.NewMessage()
				if err != nil {
					b.Error(err)
					return
				}
				in.Write(body)
				if err := in.Commit(&Envelope{Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org"}}, Client: "local", Arrival: time.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := float64(per * workers)
	return total / time.Since(start).Seconds(), float64(s.SyncRounds()) / total
}

// BenchmarkCommit10KB20Writers compares the grouped directory sync with
// one directory fsync per commit (eachSync) in the same run; x-vs-each is
// the speed-up.
func BenchmarkCommit10KB20Writers(b *testing.B) {
	n := max(b.N, 200)
	ref, _ := commitRate(b, true, n)
	got, spc := commitRate(b, false, n)
	b.ReportMetric(got, "commits/s")
	b.ReportMetric(ref, "each-commits/s")
	b.ReportMetric(got/ref, "x-vs-each")
	b.ReportMetric(spc, "syncs/commit")
	b.ReportMetric(0, "ns/op")
}

// commitOne commits one 10 KB message from a single writer, as a receiver
// with one client does: the reference BenchmarkBeginEndWork compares to.
func commitOne(b *testing.B, s *Spool, body []byte) string {
	in, err := s.NewMessage()
	if err != nil {
		b.Fatal(err)
	}
	in.Write(body)
	if err := in.Commit(&Envelope{Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org"}}, Client: "local", Arrival: time.Now()}); err != nil {
		b.Fatal(err)
	}
	return in.ID
}

// BenchmarkCommit10KB is the cost of one commit of a 10 KB message from a
// single writer (one file and one directory fsync).
func BenchmarkCommit10KB(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	b.ResetTimer()
	for range b.N {
		commitOne(b, s, body)
	}
}

// BenchmarkBeginEndWork is the cost the work marker adds to each message
// (one BeginWork and one EndWork), against the commit of a 10 KB message
// measured in the same run on the same file system: x-of-commit is the
// share of a commit the marker costs.
func BenchmarkBeginEndWork(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 640)
	const refN = 200
	ids := make([]string, refN)
	start := time.Now()
	for i := range refN {
		ids[i] = commitOne(b, s, body)
	}
	commitNs := float64(time.Since(start).Nanoseconds()) / refN
	b.ResetTimer()
	for i := range b.N {
		id := ids[i%refN]
		if _, err := s.BeginWork(id); err != nil {
			b.Fatal(err)
		}
		s.EndWork(id)
	}
	b.StopTimer()
	workNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(commitNs, "commit-ns")
	b.ReportMetric(workNs/commitNs, "x-of-commit")
}
