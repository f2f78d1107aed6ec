package cms

import (
	"errors"
	"testing"
)

// TestPrimitiveConstructedTypes: a SEQUENCE or SET sent in primitive form
// (identifier 0x10 or 0x11) where a constructed one belongs once reached a
// parser that ignored children()'s error and dereferenced a nil reader: a
// panic on hostile input (found by internal/smime's FuzzOpen). Every such
// place now gets an error.
func TestPrimitiveConstructedTypes(t *testing.T) {
	t.Parallel()
	tlv := func(tag byte, content ...[]byte) []byte {
		var body []byte
		for _, c := range content {
			body = append(body, c...)
		}
		if len(body) >= 0x80 {
			panic("test element too long for a short length")
		}
		return append([]byte{tag, byte(len(body))}, body...)
	}
	rsaEncryption := []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00}
	ri := tlv(0x30, []byte{0x02, 0x01, 0x02}, []byte{0x80, 0x01, 0x00}, rsaEncryption, []byte{0x04, 0x01, 0x00})
	data := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	aes := tlv(0x30, []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}, tlv(0x04, make([]byte, 16)))
	envelopedData := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	build := func(eciTag, riTag, algTag, setTag byte) []byte {
		alg := aes
		if algTag != 0x30 {
			alg = append([]byte{algTag}, aes[1:]...)
		}
		eci := tlv(eciTag, data, alg, tlv(0x80, make([]byte, 16)))
		r := append([]byte{riTag}, ri[1:]...)
		return tlv(0x30, envelopedData, tlv(0xa0, tlv(0x30, []byte{0x02, 0x01, 0x02}, tlv(setTag, r), eci)))
	}
	for name, input := range map[string][]byte{
		"encryptedContentInfo": build(0x10, 0x30, 0x30, 0x31),
		"recipientInfo":        build(0x30, 0x10, 0x30, 0x31),
		"contentEncryptionAlg": build(0x30, 0x30, 0x10, 0x31),
		"recipientInfos":       build(0x30, 0x30, 0x30, 0x11),
	} {
		if _, _, err := Decrypt(input, nil, DecryptOptions{}); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotForUs) {
			t.Errorf("%s in primitive form: Decrypt gave %v, want a malformed error", name, err)
		}
		if _, err := Addressed(input, nil, DecryptOptions{}); err == nil {
			t.Errorf("%s in primitive form: Addressed gave no error", name)
		}
	}
}
