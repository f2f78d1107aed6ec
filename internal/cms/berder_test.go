package cms

import (
	"bytes"
	"errors"
	"testing"
)

// TestBERToDER: indefinite lengths become definite, DER passes unchanged
// (a certificate keeps its signed bytes), and what the reader refuses
// elsewhere is refused here too.
func TestBERToDER(t *testing.T) {
	cert := fixture(t, "rsa").Cert.Raw
	for _, c := range []struct {
		name    string
		in, out []byte
	}{
		{"indefinite", []byte{0x30, 0x80, 0x04, 0x01, 0x41, 0xa0, 0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00}, []byte{0x30, 0x07, 0x04, 0x01, 0x41, 0xa0, 0x02, 0x05, 0x00}},
		{"long form with leading zeros", []byte{0x04, 0x83, 0x00, 0x00, 0x01, 0x41}, []byte{0x04, 0x01, 0x41}},
		{"high tag number", []byte{0x3f, 0x81, 0x01, 0x80, 0x00, 0x00}, []byte{0x3f, 0x81, 0x01, 0x00}},
		{"certificate", cert, cert},
	} {
		got, err := BERToDER(c.in)
		if err != nil || !bytes.Equal(got, c.out) {
			t.Errorf("%s: % x, %v; want % x", c.name, got, err, c.out)
		}
	}
	deep := bytes.Repeat([]byte{0x30, 0x80}, maxDepth+2)
	deep = append(deep, make([]byte, 2*(maxDepth+2))...)
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"trailing data", []byte{0x05, 0x00, 0x05, 0x00}},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}},
		{"non-minimal high tag", []byte{0x1f, 0x80, 0x20, 0x00}},
		{"length beyond the data", []byte{0x04, 0x05, 0x41}},
		{"missing end-of-contents", []byte{0x30, 0x80, 0x05, 0x00}},
		{"too deep", deep},
	} {
		if got, err := BERToDER(c.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: % x, %v; want ErrMalformed", c.name, got, err)
		}
	}
}
