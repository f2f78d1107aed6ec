package cms

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// berify re-encodes DER as a streaming encoder would: every constructed
// element with an indefinite length, and every OCTET STRING (also the
// implicitly tagged [0] ones) longer than chunk split into a constructed
// string whose segments are themselves split once more, nested.
func berify(t testing.TB, der []byte, chunk int) []byte {
	t.Helper()
	var out []byte
	r := newReader(der, 0)
	for !r.empty() {
		e, err := r.next()
		if err != nil {
			t.Fatalf("berify: %v", err)
		}
		out = append(out, berifyElement(t, e, chunk)...)
	}
	return out
}

func berifyElement(t testing.TB, e element, chunk int) []byte {
	id := byte(e.class<<6) | byte(e.tag)
	isString := !e.constructed && (e.is(classUniversal, tagOctetString) || e.is(classContext, 0))
	switch {
	case e.constructed:
		out := []byte{id | 0x20, 0x80}
		out = append(out, berify(t, e.body, chunk)...)
		return append(out, 0, 0)
	case isString && len(e.body) > chunk:
		out := []byte{id | 0x20, 0x80}
		body := e.body
		for len(body) > 0 {
			n := min(len(body), 2*chunk)
			part := body[:n]
			body = body[n:]
			// A nested constructed segment of two primitive ones.
			out = append(out, 0x24, 0x80)
			for len(part) > 0 {
				m := min(len(part), chunk)
				out = appendHeader(out, classUniversal, tagOctetString, false, m, part[:m])
				part = part[m:]
			}
			out = append(out, 0, 0)
		}
		return append(out, 0, 0)
	}
	return bytes.Clone(e.raw)
}

// TestBERInput: every message we can write, re-encoded as BER with
// indefinite lengths and segmented strings, still decrypts; the segments
// of the content are joined in place.
func TestBERInput(t *testing.T) {
	t.Parallel()
	for _, c := range []ContentCipher{AES256GCM, AES128CBC} {
		for _, key := range []string{"rsa", "p256", "x25519"} {
			for _, ski := range []bool{false, true} {
				for _, chunk := range []int{1, 7, 1000} {
					t.Run(fmt.Sprintf("%s/%s/ski=%v/chunk=%d", c, key, ski, chunk), func(t *testing.T) {
						kp := fixture(t, key)
						plain := make([]byte, 4321)
						rand.Read(plain)
						der := encryptTo(t, plain, EncryptOptions{Cipher: c}, Recipient{Cert: kp.Cert, RSAPadding: OAEP, UseSKI: ski})
						ber := berify(t, der, chunk)
						if bytes.Equal(ber, der) || ber[1] != 0x80 {
							t.Fatal("berify changed nothing")
						}
						got, _, err := Decrypt(ber, []KeyPair{kp}, DecryptOptions{})
						if err != nil || !bytes.Equal(got, plain) {
							t.Fatalf("Decrypt(BER) = %v, equal %v", err, bytes.Equal(got, plain))
						}
					})
				}
			}
		}
	}
}

func TestBERReaderErrors(t *testing.T) {
	t.Parallel()
	cases := map[string][]byte{
		"indefinite primitive":    {0x04, 0x80, 0, 0},
		"missing end-of-contents": {0x30, 0x80, 0x05, 0x00},
		"reserved length":         {0x30, 0xff},
		"nine length octets":      {0x30, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		"truncated high tag":      {0x1f, 0x81},
		"non-minimal high tag":    {0x1f, 0x80, 0x01, 0x00},
		"high form for low tag":   {0x1f, 0x05, 0x00},
	}
	for name, b := range cases {
		if _, _, err := parseElement(b, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A segment of a constructed OCTET STRING that is not one.
	e, _, err := parseElement([]byte{0x24, 0x80, 0x02, 0x01, 0x00, 0, 0}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := octets(e, true); !errors.Is(err, ErrMalformed) {
		t.Errorf("INTEGER segment: %v", err)
	}
	// Constructed strings nested deeper than maxStringNesting: each level
	// costs a pass, so depth is refused rather than paid for.
	nested := []byte{0x04, 0x01, 0x41}
	for i := 0; i < maxStringNesting+2; i++ {
		nested = append(append([]byte{0x24, 0x80}, nested...), 0, 0)
	}
	e, _, err = parseElement(nested, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := octets(e, true); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "nested") {
		t.Errorf("deeply nested constructed string: %v", err)
	}
	// OIDs.
	for _, b := range [][]byte{{}, {0x2a, 0x86}, {0x80, 0x01}, bytes.Repeat([]byte{1}, 65)} {
		if _, err := readOID(element{class: classUniversal, tag: tagOID, body: b}); !errors.Is(err, ErrMalformed) {
			t.Errorf("OID % x: err = %v", b, err)
		}
	}
	oid, err := readOID(element{class: classUniversal, tag: tagOID, body: []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x02}})
	if err != nil || !oid.Equal(oidRC2CBC) {
		t.Errorf("RC2 OID = %v, %v", oid, err)
	}
}
