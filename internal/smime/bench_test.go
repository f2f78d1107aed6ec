package smime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"testing"
	"time"

	"smimegate/internal/cms"
)

// The benchmarks compare Seal and Open with a reference built from the bare
// parts in the same run (cms alone plus encoding/base64 on whole buffers,
// without line breaks) and report the ratio as x-ref: what the MIME shape,
// the streaming line encoder and the lenient line-by-line decoder cost on
// top of the cryptography. Run them with
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/smime

const benchSize = 4 << 20

func BenchmarkSeal(b *testing.B) {
	rsa := loadPair(b, "rsa")
	msg := largeMessage(b, benchSize)
	work := make([]byte, len(msg), len(msg)+SealSpare)
	opts := SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM}
	var der bytes.Buffer
	text := make([]byte, base64.StdEncoding.EncodedLen(len(msg)+4096))
	var seal, ref time.Duration
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(work, msg)
		start := time.Now()
		if err := Seal(io.Discard, work, opts); err != nil {
			b.Fatal(err)
		}
		seal += time.Since(start)

		copy(work, msg)
		der.Reset()
		start = time.Now()
		if err := cms.Encrypt(&der, work, opts.Recipients, cms.EncryptOptions{Cipher: opts.Cipher}); err != nil {
			b.Fatal(err)
		}
		base64.StdEncoding.Encode(text, der.Bytes())
		ref += time.Since(start)
	}
	b.ReportMetric(float64(seal)/float64(ref), "x-ref")
	b.ReportMetric(float64(seal.Nanoseconds())/float64(b.N), "ns/seal")
	b.ReportMetric(float64(ref.Nanoseconds())/float64(b.N), "ns/ref")
}

func BenchmarkOpen(b *testing.B) {
	rsa := loadPair(b, "rsa")
	msg := largeMessage(b, benchSize)
	keys := []cms.KeyPair{rsa}
	sealedMsg := sealed(b, msg, SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	_, body := splitHeader(sealedMsg)
	oneLine := bytes.ReplaceAll(body, []byte("\r\n"), nil)
	var open, ref time.Duration
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if r := Open(sealedMsg, keys, OpenOptions{}); r.Outcome != Opened {
			b.Fatal(r.Err)
		}
		open += time.Since(start)

		// Any opener needs a fresh buffer per message (the plaintext is
		// handed on), so the reference allocates one too.
		start = time.Now()
		der := make([]byte, base64.StdEncoding.DecodedLen(len(oneLine)))
		n, err := base64.StdEncoding.Decode(der, oneLine)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := cms.Decrypt(der[:n], keys, cms.DecryptOptions{}); err != nil {
			b.Fatal(err)
		}
		ref += time.Since(start)
	}
	b.ReportMetric(float64(open)/float64(ref), "x-ref")
	b.ReportMetric(float64(open.Nanoseconds())/float64(b.N), "ns/open")
	b.ReportMetric(float64(ref.Nanoseconds())/float64(b.N), "ns/ref")
}

// BenchmarkDecodeBase64 compares the lenient line-by-line decoder on CRLF
// lines of 76 with encoding/base64 on the same text without line breaks.
func BenchmarkDecodeBase64(b *testing.B) {
	data := largeMessage(b, benchSize)
	var text bytes.Buffer
	enc := newLineEncoder(&text)
	enc.Write(data)
	enc.Close()
	oneLine := bytes.ReplaceAll(text.Bytes(), []byte("\r\n"), nil)
	var ours, ref time.Duration
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := decodeBase64(text.Bytes()); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		start = time.Now()
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(oneLine)))
		if _, err := base64.StdEncoding.Decode(dst, oneLine); err != nil {
			b.Fatal(err)
		}
		ref += time.Since(start)
	}
	b.ReportMetric(float64(ours)/float64(ref), "x-ref")
}

// plainMultipart builds an ordinary multipart/mixed message of about size
// bytes: a text part and parts-1 base64 attachments, none of them CMS.
func plainMultipart(t testing.TB, size, parts int) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Grow(size + 8192)
	b.WriteString("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: plain\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_plain_boundary\"\r\n\r\nThis is a multi-part message in MIME format.\r\n" +
		"--=_plain_boundary\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Hello Bob, the reports are attached.=0D=0A\r\n")
	chunk := make([]byte, (size/(parts-1))/4*3)
	for i := 0; i < parts-1; i++ {
		for j := range chunk {
			chunk[j] = byte(i*7 + j*13)
		}
		fmt.Fprintf(&b, "--=_plain_boundary\r\nContent-Type: application/pdf; name=\"report-%d.pdf\"\r\n"+
			"Content-Disposition: attachment; filename=\"report-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
		enc := newLineEncoder(&b)
		enc.Write(chunk)
		enc.Close()
	}
	b.WriteString("--=_plain_boundary--\r\n")
	return b.Bytes()
}

// plainText builds a single-part text message of about size bytes.
func plainText(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: plain\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <plain@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog, and the dog does not mind at all.\r\n")
	}
	return b.Bytes()
}

// BenchmarkOpenPlain measures what Open costs on ordinary mail that is not
// encrypted, which is most inbound mail. The reference is one pass over the
// message that reads every byte (bytes.IndexByte for a NUL), the floor of
// any inspection that looks at the whole message; x-ref is Open's time over
// that reference.
func BenchmarkOpenPlain(b *testing.B) {
	keys := []cms.KeyPair{loadPair(b, "rsa")}
	for _, c := range []struct {
		name string
		msg  []byte
	}{
		{"multipart-1MiB-20parts", plainMultipart(b, 1<<20, 20)},
		{"text-10KB", plainText(10 << 10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var open, ref time.Duration
			b.SetBytes(int64(len(c.msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if r := Open(c.msg, keys, OpenOptions{}); r.Outcome != NotEncrypted {
					b.Fatal(r.Outcome, r.Err)
				}
				open += time.Since(start)
				start = time.Now()
				if bytes.IndexByte(c.msg, 0) >= 0 {
					b.Fatal("NUL in a plain message")
				}
				ref += time.Since(start)
			}
			b.ReportMetric(float64(open)/float64(ref), "x-ref")
			b.ReportMetric(float64(open.Nanoseconds())/float64(b.N), "ns/open")
			b.ReportMetric(float64(ref.Nanoseconds())/float64(b.N), "ns/ref")
		})
	}
}
