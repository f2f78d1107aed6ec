package smime

import (
	"crypto/x509"
	"testing"
	"time"

	"smimegate/internal/cms"
)

// BenchmarkInspectSmall measures Inspect on a 10 KB message sealed to a
// P-256 key, the receiving gateway's check before its reply, against Open
// of the same message in the same run (x-open: Inspect's share of Open).
func BenchmarkInspectSmall(b *testing.B) {
	ec := loadPair(b, "ec")
	msg := largeMessage(b, 10<<10)
	sealedMsg := sealed(b, msg, SealOptions{Recipients: []cms.Recipient{{Cert: ec.Cert}}, Cipher: cms.AES256GCM})
	certs := []*x509.Certificate{ec.Cert}
	keys := []cms.KeyPair{ec}
	var ins, open time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if r := Inspect(sealedMsg, certs, OpenOptions{}); !r.ForUs {
			b.Fatal(r.Err)
		}
		ins += time.Since(start)
		start = time.Now()
		if r := Open(sealedMsg, keys, OpenOptions{}); r.Outcome != Opened {
			b.Fatal(r.Err)
		}
		open += time.Since(start)
	}
	b.ReportMetric(float64(ins)/float64(open), "x-open")
	b.ReportMetric(float64(ins.Nanoseconds())/float64(b.N), "ns/inspect")
	b.ReportMetric(float64(open.Nanoseconds())/float64(b.N), "ns/open")
}

// BenchmarkInspectOnly is Inspect alone on the message of
// BenchmarkInspectSmall, for a CPU profile of the walk.
func BenchmarkInspectOnly(b *testing.B) {
	ec := loadPair(b, "ec")
	msg := largeMessage(b, 10<<10)
	sealedMsg := sealed(b, msg, SealOptions{Recipients: []cms.Recipient{{Cert: ec.Cert}}, Cipher: cms.AES256GCM})
	certs := []*x509.Certificate{ec.Cert}
	b.ReportAllocs()
	b.SetBytes(int64(len(sealedMsg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := Inspect(sealedMsg, certs, OpenOptions{}); !r.ForUs {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkDecodeBase64Small compares decodeBase64 on the body of a 10 KB
// sealed message (lines of 76 and CRLF, as Seal writes them) with the
// line-by-line decoder alone, in the same run (x-lines: the time of the
// first over the second).
func BenchmarkDecodeBase64Small(b *testing.B) {
	ec := loadPair(b, "ec")
	sealedMsg := sealed(b, largeMessage(b, 10<<10), SealOptions{Recipients: []cms.Recipient{{Cert: ec.Cert}}, Cipher: cms.AES256GCM})
	_, body := splitHeader(sealedMsg)
	var fast, lines time.Duration
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := decodeBase64(body); err != nil {
			b.Fatal(err)
		}
		fast += time.Since(start)
		start = time.Now()
		if _, err := decodeBase64Lines(make([]byte, 0, len(body)/4*3+3), body); err != nil {
			b.Fatal(err)
		}
		lines += time.Since(start)
	}
	b.ReportMetric(float64(fast)/float64(lines), "x-lines")
	b.ReportMetric(float64(fast.Nanoseconds())/float64(b.N), "ns/decode")
	b.ReportMetric(float64(lines.Nanoseconds())/float64(b.N), "ns/lines")
}
