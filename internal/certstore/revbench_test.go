package certstore

import (
	"context"
	"crypto/x509"
	"math/big"
	"runtime"
	"testing"
	"time"
)

// BenchmarkLookupRevocation measures what checking revocation adds to a
// lookup: the same partner certificate (its chain has one link, the status
// is a current OCSP answer) looked up with revocation on against the
// reference of the same store without it, in the same run (x-of-plain).
func BenchmarkLookupRevocation(b *testing.B) {
	clock := newTestClock()
	pki := newTestPKI(b, clock)
	leaf := pki.partner("example.net", newKeyP256(b))
	r := newTestRevocation(b, clock, RevocationStrict, "")
	with := revStore(b, clock, r, []*x509.Certificate{pki.ca}, leaf)
	r.CheckNow(context.Background())
	without := revStore(b, clock, nil, []*x509.Certificate{pki.ca}, leaf)
	measure := func(s *Store) time.Duration {
		start := time.Now()
		for range b.N {
			if m := s.Lookup("example.net"); len(m.Certs) != 1 {
				b.Fatal(m.Rule)
			}
		}
		return time.Since(start)
	}
	plain := measure(without)
	checked := measure(with)
	b.ReportMetric(float64(checked.Nanoseconds())/float64(b.N), "lookup-ns")
	b.ReportMetric(float64(checked)/float64(plain), "x-of-plain")
}

// BenchmarkParseCRL measures our CRL reading (frame by Go, entries into
// the index) against x509.ParseRevocationList alone on the same CRL of
// 250,000 entries (8.5 MB): time (x-of-go), the heap each keeps live
// while its result is held (live-MiB, go-live-MiB) and what each
// allocates (alloc-MiB/op, go-alloc-MiB/op).
func BenchmarkParseCRL(b *testing.B) {
	clock := newTestClock()
	pki := newTestPKI(b, clock)
	entries := make([]x509.RevocationListEntry, 250000)
	for i := range entries {
		entries[i] = x509.RevocationListEntry{SerialNumber: new(big.Int).Lsh(big.NewInt(int64(i+1)), 100), RevocationTime: testNow}
	}
	der := pki.makeCRL(testNow, entries, nil)
	entries = nil
	live := func(f func() any) (time.Duration, float64, float64) {
		var keep []any
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		for range b.N {
			keep = append(keep[:0], f())
		}
		d := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(keep)
		return d, float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / (1 << 20), float64(m1.TotalAlloc-m0.TotalAlloc) / float64(b.N) / (1 << 20)
	}
	b.ResetTimer()
	ours, oursLive, oursAlloc := live(func() any {
		ix, err := parseCRL(der, pki.ca, "bench", time.Hour)
		if err != nil || len(ix.serials) != 250000 {
			b.Fatal(err)
		}
		return ix
	})
	goTime, goLive, goAlloc := live(func() any {
		rl, err := x509.ParseRevocationList(der)
		if err != nil || rl.CheckSignatureFrom(pki.ca) != nil {
			b.Fatal(err)
		}
		return rl
	})
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N)/1e6, "parse-ms")
	b.ReportMetric(float64(ours)/float64(goTime), "x-of-go")
	b.ReportMetric(oursLive, "live-MiB")
	b.ReportMetric(goLive, "go-live-MiB")
	b.ReportMetric(oursAlloc, "alloc-MiB/op")
	b.ReportMetric(goAlloc, "go-alloc-MiB/op")
}
