package smime

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"

	"smimegate/internal/cms"
)

// This file reads just enough of a BER-encoded SignedData (RFC 5652 section
// 5) or CompressedData (RFC 3274) to reach its encapsulated content, so that
// the walk can look inside: a signature is not verified and a digest not
// checked. The elements are read with internal/cms's BER reader and its
// bounds (the eContent sits 4 levels down, its pieces 6 and more, well
// within cms's nesting bound); the content it extracts is looked at, never
// trusted.

// maxStringSegments bounds the pieces of a constructed OCTET STRING (X.690
// section 8.7.3). Streaming encoders cut the eContent into pieces of 1 KiB
// (OpenSSL) to 64 KiB; 65536 pieces of 1 KiB are 64 MiB, DefaultMaxSize.
const maxStringSegments = 1 << 16

// errBER is wrapped by every error of this reader.
var errBER = errors.New("malformed BER")

// tlv is one BER element: its identifier octet and its contents, which
// alias the input. Only the low-tag-number form (X.690 section 8.1.2.2) is
// read; the structures here use no other.
type tlv struct {
	tag         byte // the identifier octet with the constructed bit cleared
	constructed bool
	body        []byte // contents, without the end-of-contents octets
}

// readTLV reads the element at the start of b, depth levels down, and
// returns it with the rest of b.
func readTLV(b []byte, depth int) (tlv, []byte, error) {
	e, rest, err := cms.ReadElement(b, depth)
	if err != nil {
		return tlv{}, nil, fmt.Errorf("%w: %w", errBER, err)
	}
	if e.Tag >= 0x1f {
		return tlv{}, nil, fmt.Errorf("%w: high tag number form", errBER)
	}
	return tlv{tag: byte(e.Class<<6 | e.Tag), constructed: e.Constructed, body: e.Body}, rest, nil
}

// child reads the next element of a constructed body, which must have the
// given tag.
func child(b []byte, tag byte, depth int, what string) (tlv, []byte, error) {
	e, rest, err := readTLV(b, depth)
	if err != nil {
		return tlv{}, nil, fmt.Errorf("%s: %w", what, err)
	}
	if e.tag != tag {
		return tlv{}, nil, fmt.Errorf("%w: %s has tag 0x%02x, want 0x%02x", errBER, what, e.tag, tag)
	}
	return e, rest, nil
}

// BER tags used here (X.690 section 8.1.2, low tag number form).
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagOID         = 0x06
	tagSequence    = 0x10
	tagExplicit0   = 0x80 // [0], context-specific
)

// encapsulated is the encapsulated content of a SignedData or
// CompressedData.
type encapsulated struct {
	present bool   // eContent is there (a detached signature has none)
	data    bool   // eContentType is id-data: a MIME entity (RFC 8551 section 3.5)
	content []byte // the eContent, its pieces joined; still compressed for CompressedData
	joined  bool   // content is a new buffer rather than an alias of the input
}

// readEncapsulated returns the encapsulated content of a ContentInfo that
// peekContentInfo called cmsSigned or cmsCompressed. Both structures start
// alike: SEQUENCE { version, one SET or SEQUENCE (digestAlgorithms,
// compressionAlgorithm), encapContentInfo, ... } (RFC 5652 section 5.1, RFC
// 3274 section 1.1). What follows the encapContentInfo (certificates,
// signerInfos) is not read.
func readEncapsulated(der []byte, compressed bool) (encapsulated, error) {
	var ec encapsulated
	ci, _, err := child(der, tagSequence, 0, "ContentInfo")
	if err != nil {
		return ec, err
	}
	_, rest, err := child(ci.body, tagOID, 1, "contentType")
	if err != nil {
		return ec, err
	}
	content, _, err := child(rest, tagExplicit0, 1, "content")
	if err != nil {
		return ec, err
	}
	sd, _, err := child(content.body, tagSequence, 2, "content SEQUENCE")
	if err != nil {
		return ec, err
	}
	_, rest, err = child(sd.body, tagInteger, 3, "version")
	if err != nil {
		return ec, err
	}
	alg, rest, err := readTLV(rest, 3)
	if err != nil {
		return ec, fmt.Errorf("algorithms: %w", err)
	}
	if compressed {
		// RFC 3274 section 1.1: zlib is the only algorithm defined.
		a, _, err := child(alg.body, tagOID, 4, "compressionAlgorithm")
		if err != nil {
			return ec, err
		}
		if !bytes.Equal(a.body, oidZlibCompress) {
			return ec, fmt.Errorf("%w: compression algorithm is not zlib (RFC 3274 section 2)", errBER)
		}
	}
	eci, _, err := child(rest, tagSequence, 3, "encapContentInfo")
	if err != nil {
		return ec, err
	}
	ct, rest, err := child(eci.body, tagOID, 4, "eContentType")
	if err != nil {
		return ec, err
	}
	ec.data = bytes.Equal(ct.body, oidData)
	if len(rest) == 0 {
		return ec, nil
	}
	explicit, _, err := child(rest, tagExplicit0, 4, "eContent")
	if err != nil {
		return ec, err
	}
	os, _, err := child(explicit.body, tagOctetString, 5, "eContent OCTET STRING")
	if err != nil {
		return ec, err
	}
	ec.present = true
	if !os.constructed {
		ec.content = os.body
		return ec, nil
	}
	// X.690 section 8.7.3.2: a constructed OCTET STRING is its pieces
	// in order; the pieces may themselves be constructed.
	pieces := 0
	n, err := octetsLen(os.body, 6, &pieces)
	if err != nil {
		return ec, err
	}
	ec.content, ec.joined = make([]byte, 0, n), true
	if err := appendOctets(&ec.content, os.body, 6); err != nil {
		return ec, err
	}
	return ec, nil
}

// octetsLen returns the length of the pieces of a constructed OCTET STRING
// and counts them in pieces.
func octetsLen(b []byte, depth int, pieces *int) (int, error) {
	n := 0
	for len(b) > 0 {
		e, rest, err := child(b, tagOctetString, depth, "eContent piece")
		if err != nil {
			return 0, err
		}
		if *pieces++; *pieces > maxStringSegments {
			return 0, fmt.Errorf("%w: eContent in more than %d pieces", errBER, maxStringSegments)
		}
		if e.constructed {
			m, err := octetsLen(e.body, depth+1, pieces)
			if err != nil {
				return 0, err
			}
			n += m
		} else {
			n += len(e.body)
		}
		b = rest
	}
	return n, nil
}

func appendOctets(dst *[]byte, b []byte, depth int) error {
	for len(b) > 0 {
		e, rest, err := child(b, tagOctetString, depth, "eContent piece")
		if err != nil {
			return err
		}
		if e.constructed {
			if err := appendOctets(dst, e.body, depth+1); err != nil {
				return err
			}
		} else {
			*dst = append(*dst, e.body...)
		}
		b = rest
	}
	return nil
}

// inflate undoes the zlib compression of a CompressedData eContent (RFC
// 3274 section 2, RFC 1950), refusing output beyond limit bytes: a few
// kilobytes of zlib can stand for gigabytes.
func inflate(b []byte, limit int64) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("compressed content: %w", err)
	}
	defer zr.Close()
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("compressed content: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: compressed content inflates beyond %d bytes", ErrTooLarge, limit)
	}
	return out.Bytes(), nil
}
