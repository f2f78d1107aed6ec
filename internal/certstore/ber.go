package certstore

import (
	"errors"
	"fmt"
)

// maxBERDepth bounds the nesting of a BER structure; a PKCS#7 bundle nests
// about ten deep, a certificate inside it about ten more.
const maxBERDepth = 64

// berToDER re-encodes BER with indefinite lengths (X.690 section 8.1.3.6),
// which some tools write for PKCS#7 (`openssl cms -stream`, streaming
// encoders), with definite lengths, so that the DER reader can take it.
// Only lengths change: tags and primitive contents are copied, so the DER
// certificates inside come out byte for byte and keep their signatures.
func berToDER(in []byte) ([]byte, error) {
	out, rest, err := berElement(in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("BER: trailing data")
	}
	return out, nil
}

// berElement converts the element at the start of in and returns it with
// the input that follows it.
func berElement(in []byte, depth int) (out, rest []byte, err error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("BER: nested deeper than %d", maxBERDepth)
	}
	// Identifier octets (X.690 section 8.1.2), high tag numbers included.
	if len(in) < 2 {
		return nil, nil, errors.New("BER: truncated element")
	}
	tagLen := 1
	if in[0]&0x1f == 0x1f {
		for {
			if tagLen >= len(in) || tagLen > 5 {
				return nil, nil, errors.New("BER: bad tag")
			}
			b := in[tagLen]
			tagLen++
			if b&0x80 == 0 {
				break
			}
		}
	}
	constructed := in[0]&0x20 != 0
	tag, in := in[:tagLen], in[tagLen:]
	if len(in) == 0 {
		return nil, nil, errors.New("BER: truncated length")
	}
	// Length octets (X.690 section 8.1.3).
	l := int(in[0])
	in = in[1:]
	var content []byte
	switch {
	case l == 0x80:
		if !constructed {
			return nil, nil, errors.New("BER: indefinite length on a primitive element")
		}
		for {
			if len(in) >= 2 && in[0] == 0 && in[1] == 0 {
				in = in[2:]
				break
			}
			if len(in) == 0 {
				return nil, nil, errors.New("BER: missing end-of-contents")
			}
			var child []byte
			if child, in, err = berElement(in, depth+1); err != nil {
				return nil, nil, err
			}
			content = append(content, child...)
		}
		return appendTLV(tag, content), in, nil
	case l&0x80 != 0:
		n := l & 0x7f
		if n == 0 || n > 4 || n > len(in) {
			return nil, nil, errors.New("BER: bad length")
		}
		l = 0
		for _, b := range in[:n] {
			l = l<<8 | int(b)
		}
		in = in[n:]
	}
	if l > len(in) {
		return nil, nil, errors.New("BER: length beyond the data")
	}
	body, rest := in[:l], in[l:]
	if !constructed {
		return appendTLV(tag, body), rest, nil
	}
	for len(body) > 0 {
		var child []byte
		if child, body, err = berElement(body, depth+1); err != nil {
			return nil, nil, err
		}
		content = append(content, child...)
	}
	return appendTLV(tag, content), rest, nil
}

// appendTLV encodes tag, a DER length (X.690 section 10.1: the shortest
// form) and content.
func appendTLV(tag, content []byte) []byte {
	out := append([]byte{}, tag...)
	n := len(content)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, content...)
}
