package spool

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// commitRate commits n 10 KB messages from 20 goroutines under policy and
// returns commits per second and directory syncs per commit.
func commitRate(b *testing.B, policy SyncPolicy, n int) (rate, syncsPerCommit float64) {
	s, err := OpenWith(b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), Sync: policy})
	if err != nil {
		b.Fatal(err)
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

// BenchmarkCommit10KB20Writers compares the grouped policies with one
// directory fsync per commit (SyncEach) in the same run; x-vs-each is the
// speed-up.
func BenchmarkCommit10KB20Writers(b *testing.B) {
	for _, policy := range []SyncPolicy{SyncGrouped, SyncFilesystem} {
		b.Run(policy.String(), func(b *testing.B) {
			n := max(b.N, 200)
			ref, _ := commitRate(b, SyncEach, n)
			got, spc := commitRate(b, policy, n)
			b.ReportMetric(got, "commits/s")
			b.ReportMetric(ref, "each-commits/s")
			b.ReportMetric(got/ref, "x-vs-each")
			b.ReportMetric(spc, "syncs/commit")
			b.ReportMetric(0, "ns/op")
		})
	}
}
