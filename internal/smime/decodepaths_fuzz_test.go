package smime

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzDecodeBase64Paths holds decodeBase64's single-call path to the
// line-by-line decoder it falls back to: for any text, the same bytes and
// the same error, so that which path ran never shows.
func FuzzDecodeBase64Paths(f *testing.F) {
	f.Add([]byte("SGVsbG8=\r\n"))
	f.Add([]byte("SGVs\r\nbG8=\r\n"))
	f.Add([]byte("SGVs\nbG8"))
	f.Add([]byte("SGVsbA==\r\nbG8=\r\n"))
	f.Add([]byte("SG\rVs\r\r\nbA=="))
	f.Add([]byte("  \t\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		got, err := decodeBase64(text)
		want, werr := decodeBase64Lines(make([]byte, 0, len(text)/4*3+3), text)
		if fmt.Sprint(err) != fmt.Sprint(werr) || !bytes.Equal(got, want) {
			t.Fatalf("decodeBase64(%q) = %q, %v; line by line: %q, %v", text, got, err, want, werr)
		}
	})
}
