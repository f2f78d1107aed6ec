package smime

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestLineEncoder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 2, 3, 56, 57, 58, 114, 1000, 57*encodeBufLines - 1, 57 * encodeBufLines, 57*encodeBufLines + 1, 100003} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		var out bytes.Buffer
		enc := newLineEncoder(&out)
		// Write in pieces of irregular sizes, as cms.Encrypt does.
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(200))
			if k, err := enc.Write(rest[:n]); err != nil || k != n {
				t.Fatalf("size %d: Write = %d, %v", size, k, err)
			}
			rest = rest[n:]
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		if size == 0 {
			if text != "" {
				t.Errorf("empty input gave %q", text)
			}
			continue
		}
		if !strings.HasSuffix(text, "\r\n") {
			t.Errorf("size %d: output does not end in CRLF", size)
		}
		lines := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
		for i, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("size %d line %d: bare line end", size, i)
			}
			if i < len(lines)-1 && len(l) != lineChars || len(l) > lineChars {
				t.Fatalf("size %d line %d: %d characters", size, i, len(l))
			}
		}
		joined := strings.Join(lines, "")
		if joined != base64.StdEncoding.EncodeToString(data) {
			t.Fatalf("size %d: text differs from encoding/base64", size)
		}
		back, err := decodeBase64(out.Bytes())
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("size %d: decodeBase64 round trip: %v", size, err)
		}
	}
}

func TestDecodeBase64Mangled(t *testing.T) {
	t.Parallel()
	data := []byte("The quick brown fox jumps over the lazy dog, 0123456789 times.")
	std := base64.StdEncoding.EncodeToString(data)
	wrap := func(s string, n int, nl string) string {
		var b strings.Builder
		for len(s) > n {
			b.WriteString(s[:n] + nl)
			s = s[n:]
		}
		b.WriteString(s + nl)
		return b.String()
	}
	for name, text := range map[string]string{
		"crlf 76":          wrap(std, 76, "\r\n"),
		"lf 64":            wrap(std, 64, "\n"),
		"trailing spaces":  wrap(std, 20, " \t\r\n"),
		"one line":         std,
		"missing padding":  strings.TrimRight(std, "="),
		"leading newlines": "\r\n\r\n" + std,
	} {
		got, err := decodeBase64([]byte(text))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: got %q, %v", name, got, err)
		}
	}
	for name, text := range map[string]string{
		"bad character": std[:10] + "*" + std[11:],
		"empty":         "\r\n",
		"padding early": "QQ==QUJD",
	} {
		if got, err := decodeBase64([]byte(text)); err == nil {
			t.Errorf("%s: decoded to %q without error", name, got)
		} else if !strings.Contains(err.Error(), "base64 body") {
			t.Errorf("%s: error %q does not say where", name, err)
		}
	}
}
