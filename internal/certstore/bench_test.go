package certstore

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchStore loads n partner certificates, one domain each, as
// pNNN.example.net, and returns the store and the certificates.
func benchStore(b *testing.B, n int) (*Store, []*x509.Certificate) {
	b.Helper()
	own, partners := testDirs(b)
	makeTestKeys(b)
	var certs []*x509.Certificate
	for i := range n {
		c := makeCert(b, certSpec{key: rsaKey(b, i%len(testRSA)), emails: []string{fmt.Sprintf("smg_encryptor@p%d.example.net", i)}})
		certs = append(certs, c)
		writeFile(b, partners, fmt.Sprintf("p%d.pem", i), certPEM(c))
	}
	return mustLoad(b, Options{OwnDir: own, PartnersDir: partners}), certs
}

// BenchmarkLookup measures Lookup (canonical form, walk up the parents,
// judge validity now) against a reference in the same run: the plainest
// correct alternative, a linear scan over every certificate's SAN for the
// exact domain. The ratio lookup/scan is reported as x-of-scan.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			s, certs := benchStore(b, n)
			to := fmt.Sprintf("mail.p%d.example.net", n/2)
			want := fmt.Sprintf("smg_encryptor@p%d.example.net", n/2)

			start := time.Now()
			for range b.N {
				if m := s.Lookup(to); len(m.Certs) != 1 {
					b.Fatal("no match")
				}
			}
			lookup := time.Since(start)

			start = time.Now()
			for range b.N {
				// The reference does less (exact domain only, no
				// parent walk, no IDN): it is a floor, not a rival.
				found := 0
				d := strings.ToLower(to)
				d = d[strings.IndexByte(d, '.')+1:]
				for _, c := range certs {
					for _, e := range c.EmailAddresses {
						if strings.EqualFold(e, want) && strings.HasSuffix(e, "@"+d) {
							found++
						}
					}
				}
				if found != 1 {
					b.Fatal("reference found nothing")
				}
			}
			scan := time.Since(start)
			b.ReportMetric(float64(lookup.Nanoseconds())/float64(b.N), "lookup-ns")
			b.ReportMetric(float64(lookup)/float64(scan), "x-of-scan")
		})
	}
}

// BenchmarkLoad measures loading a directory of 100 partner certificates
// against the reference of parsing the same certificates with
// x509.ParseCertificate alone; the ratio says what reading files, judging
// and indexing cost on top (x-of-parse).
func BenchmarkLoad(b *testing.B) {
	s, certs := benchStore(b, 100)
	opts := s.Options()
	start := time.Now()
	for range b.N {
		if _, err := Load(opts); err != nil {
			b.Fatal(err)
		}
	}
	load := time.Since(start)
	start = time.Now()
	for range b.N {
		for _, c := range certs {
			if _, err := x509.ParseCertificate(c.Raw); err != nil {
				b.Fatal(err)
			}
		}
	}
	parse := time.Since(start)
	b.ReportMetric(float64(load.Nanoseconds())/float64(b.N), "load-ns")
	b.ReportMetric(float64(load)/float64(parse), "x-of-parse")
}
