package cms

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// RFC 3394 section 4 test vectors.
func TestKeyWrapVectors(t *testing.T) {
	t.Parallel()
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct{ kek, key, wrapped string }{
		// 4.1: 128 bits of key data with a 128-bit KEK.
		{"000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
			"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		// 4.6: 256 bits of key data with a 256-bit KEK.
		{"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, c := range cases {
		got, err := keyWrap(h(c.kek), h(c.key))
		if err != nil || !bytes.Equal(got, h(c.wrapped)) {
			t.Fatalf("wrap = %X, %v; want %s", got, err, c.wrapped)
		}
		back, err := keyUnwrap(h(c.kek), got)
		if err != nil || !bytes.Equal(back, h(c.key)) {
			t.Fatalf("unwrap = %X, %v", back, err)
		}
		// Any flipped bit fails the integrity check, with the one error.
		for i := range got {
			bad := bytes.Clone(got)
			bad[i] ^= 1
			if _, err := keyUnwrap(h(c.kek), bad); err != errUnwrap {
				t.Fatalf("unwrap of corrupted byte %d: %v", i, err)
			}
		}
	}
	for _, n := range []int{0, 8, 23, 33} {
		if _, err := keyUnwrap(make([]byte, 16), make([]byte, n)); err != errUnwrap {
			t.Fatalf("unwrap of %d bytes: %v", n, err)
		}
	}
}
