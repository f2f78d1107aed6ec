package cms

import (
	"encoding/asn1"
	"math"
)

// This file is a BER reader (ITU-T X.690 section 8) sized for CMS: it
// accepts definite and indefinite lengths and constructed strings, and it
// bounds everything an attacker controls. Go's encoding/asn1 and cryptobyte
// read DER only, and the streaming encoders that S/MIME peers use (OpenSSL
// -stream, Outlook) emit indefinite lengths.

const (
	// maxDepth bounds the nesting of constructed elements. The deepest
	// path through an EnvelopedData we read is 12 levels (down to an
	// attribute value in an issuer name); 20 leaves room for certificates
	// in originatorInfo. Every indefinite-length ancestor of a byte scans
	// it once more, so the bound also caps parsing at 20 passes over the
	// input.
	maxDepth = 20

	// maxStringNesting bounds constructed strings inside constructed
	// strings. X.690 allows any depth; encoders use one level (OpenSSL and
	// gpgsm) and joining costs a pass per level.
	maxStringNesting = 4

	// maxOIDArcs bounds an OBJECT IDENTIFIER; real ones have fewer than 20.
	maxOIDArcs = 64
)

// Tag classes (X.690 section 8.1.2.2).
const (
	classUniversal   = 0
	classApplication = 1
	classContext     = 2
	classPrivate     = 3
)

// Universal tag numbers used by CMS.
const (
	tagBoolean     = 1
	tagInteger     = 2
	tagBitString   = 3
	tagOctetString = 4
	tagNull        = 5
	tagOID         = 6
	tagSequence    = 16
	tagSet         = 17
)

// element is one decoded BER TLV. body and raw alias the input.
type element struct {
	class       int
	tag         int
	constructed bool
	indefinite  bool
	body        []byte // contents octets; for an indefinite length, without the end-of-contents octets
	raw         []byte // the whole encoding, header and end-of-contents included
	depth       int
}

func (e element) is(class, tag int) bool { return e.class == class && e.tag == tag }

// berReader reads the elements of one constructed body in turn.
type berReader struct {
	b     []byte
	depth int // depth of the elements this reader returns
}

func newReader(b []byte, depth int) *berReader { return &berReader{b: b, depth: depth} }

func (r *berReader) empty() bool { return len(r.b) == 0 }

// children returns a reader over the elements inside e.
//
// For a primitive element it returns an error and an empty reader, never
// nil: a caller that has already checked the form may ignore the error, and
// one that has not then finds nothing to read instead of dereferencing nil.
func (e element) children() (*berReader, error) {
	if !e.constructed {
		return newReader(nil, e.depth+1), malformed("expected a constructed element, found primitive tag %d", e.tag)
	}
	return newReader(e.body, e.depth+1), nil
}

// next reads the next element.
func (r *berReader) next() (element, error) {
	e, rest, err := parseElement(r.b, r.depth)
	if err != nil {
		return element{}, err
	}
	r.b = rest
	return e, nil
}

// nextIs reads the next element and checks its class, tag and form.
func (r *berReader) nextIs(class, tag int, what string) (element, error) {
	if r.empty() {
		return element{}, malformed("%s is missing", what)
	}
	e, err := r.next()
	if err != nil {
		return element{}, err
	}
	if !e.is(class, tag) {
		return element{}, malformed("%s: expected %s, found %s", what, tagString(class, tag), tagString(e.class, e.tag))
	}
	// X.690 sections 8.9.1 and 8.11.1: a SEQUENCE or SET is always
	// constructed; a primitive one is malformed, whatever reads it next.
	if class == classUniversal && (tag == tagSequence || tag == tagSet) && !e.constructed {
		return element{}, malformed("%s: a %s in primitive form", what, tagString(class, tag))
	}
	return e, nil
}

// peekIs reports whether the next element has the given class and tag,
// without consuming it.
func (r *berReader) peekIs(class, tag int) bool {
	if r.empty() {
		return false
	}
	c, t, _, _, err := parseIdentifier(r.b)
	return err == nil && c == class && t == tag
}

// optional reads the next element if it has the given class and tag, for
// OPTIONAL and DEFAULT fields; ok is false when the field is absent.
func (r *berReader) optional(class, tag int) (e element, ok bool, err error) {
	if !r.peekIs(class, tag) {
		return element{}, false, nil
	}
	e, err = r.next()
	return e, err == nil, err
}

func tagString(class, tag int) string {
	switch class {
	case classUniversal:
		switch tag {
		case tagInteger:
			return "INTEGER"
		case tagOctetString:
			return "OCTET STRING"
		case tagOID:
			return "OBJECT IDENTIFIER"
		case tagSequence:
			return "SEQUENCE"
		case tagSet:
			return "SET"
		case tagBitString:
			return "BIT STRING"
		case tagNull:
			return "NULL"
		}
		return "universal tag " + itoa(tag)
	case classContext:
		return "[" + itoa(tag) + "]"
	case classApplication:
		return "[APPLICATION " + itoa(tag) + "]"
	}
	return "[PRIVATE " + itoa(tag) + "]"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}

// parseIdentifier decodes identifier octets (X.690 section 8.1.2).
func parseIdentifier(b []byte) (class, tag int, constructed bool, n int, err error) {
	if len(b) < 1 {
		return 0, 0, false, 0, malformed("truncated: element expected")
	}
	class = int(b[0] >> 6)
	constructed = b[0]&0x20 != 0
	tag = int(b[0] & 0x1f)
	n = 1
	if tag != 0x1f {
		return class, tag, constructed, n, nil
	}
	// High-tag-number form: base-128, at most 4 bytes (tags below 2^28),
	// minimal (no leading 0x80) as X.690 section 8.1.2.4.2 requires.
	tag = 0
	for {
		if n >= len(b) {
			return 0, 0, false, 0, malformed("truncated tag number")
		}
		if n > 4 {
			return 0, 0, false, 0, malformed("tag number too large")
		}
		c := b[n]
		if n == 1 && c == 0x80 {
			return 0, 0, false, 0, malformed("non-minimal tag number")
		}
		tag = tag<<7 | int(c&0x7f)
		n++
		if c&0x80 == 0 {
			break
		}
	}
	if tag < 0x1f {
		return 0, 0, false, 0, malformed("high-tag-number form used for small tag %d", tag)
	}
	return class, tag, constructed, n, nil
}

// parseElement decodes the element at the start of b and returns it and the
// bytes that follow it. depth is the element's nesting level.
func parseElement(b []byte, depth int) (element, []byte, error) {
	if depth > maxDepth {
		return element{}, nil, malformed("nesting deeper than %d levels", maxDepth)
	}
	class, tag, constructed, n, err := parseIdentifier(b)
	if err != nil {
		return element{}, nil, err
	}
	if n >= len(b) {
		return element{}, nil, malformed("truncated: length of %s missing", tagString(class, tag))
	}
	e := element{class: class, tag: tag, constructed: constructed, depth: depth}
	l := b[n]
	n++
	switch {
	case l < 0x80:
		// Short form (X.690 section 8.1.3.4).
		return finishDefinite(e, b, n, uint64(l))
	case l == 0x80:
		// Indefinite form (X.690 section 8.1.3.6): constructed only.
		if !constructed {
			return element{}, nil, malformed("indefinite length on primitive %s", tagString(class, tag))
		}
		return finishIndefinite(e, b, n, depth)
	case l == 0xff:
		return element{}, nil, malformed("reserved length octet 0xff")
	default:
		// Long form (X.690 section 8.1.3.5). BER allows leading zeros; we
		// allow at most 8 length octets and check against what is there.
		k := int(l & 0x7f)
		if k > 8 {
			return element{}, nil, malformed("length of %s uses %d octets", tagString(class, tag), k)
		}
		if n+k > len(b) {
			return element{}, nil, malformed("truncated length of %s", tagString(class, tag))
		}
		var v uint64
		for _, c := range b[n : n+k] {
			if v > math.MaxUint64>>8 {
				return element{}, nil, malformed("length of %s overflows", tagString(class, tag))
			}
			v = v<<8 | uint64(c)
		}
		return finishDefinite(e, b, n+k, v)
	}
}

func finishDefinite(e element, b []byte, hdr int, length uint64) (element, []byte, error) {
	if length > uint64(len(b)-hdr) {
		return element{}, nil, malformed("%s of length %d exceeds the %d bytes left", tagString(e.class, e.tag), length, len(b)-hdr)
	}
	end := hdr + int(length)
	// body and raw keep the capacity of the input behind them: Decrypt
	// appends the GCM tag right after the ciphertext in place.
	e.body = b[hdr:end]
	e.raw = b[:end]
	return e, b[end:], nil
}

// finishIndefinite finds the end-of-contents octets that close an
// indefinite-length element by walking its children, each of which may be
// indefinite itself; the depth bound keeps the walk linear in practice.
func finishIndefinite(e element, b []byte, hdr int, depth int) (element, []byte, error) {
	rest := b[hdr:]
	for {
		if len(rest) < 2 {
			return element{}, nil, malformed("truncated: end-of-contents of %s missing", tagString(e.class, e.tag))
		}
		if rest[0] == 0 && rest[1] == 0 {
			end := len(b) - len(rest)
			e.indefinite = true
			e.body = b[hdr:end]
			e.raw = b[:end+2]
			return e, rest[2:], nil
		}
		_, r, err := parseElement(rest, depth+1)
		if err != nil {
			return element{}, nil, err
		}
		rest = r
	}
}

// readOID decodes an OBJECT IDENTIFIER (X.690 section 8.19).
func readOID(e element) (asn1.ObjectIdentifier, error) {
	if !e.is(classUniversal, tagOID) || e.constructed {
		return nil, malformed("expected OBJECT IDENTIFIER, found %s", tagString(e.class, e.tag))
	}
	b := e.body
	if len(b) == 0 {
		return nil, malformed("empty OBJECT IDENTIFIER")
	}
	var arcs []int
	v := 0
	for i, c := range b {
		if v == 0 && c == 0x80 {
			return nil, malformed("non-minimal OBJECT IDENTIFIER arc")
		}
		if v > math.MaxInt32>>7 {
			return nil, malformed("OBJECT IDENTIFIER arc too large")
		}
		v = v<<7 | int(c&0x7f)
		if c&0x80 != 0 {
			if i == len(b)-1 {
				return nil, malformed("truncated OBJECT IDENTIFIER")
			}
			continue
		}
		if len(arcs) == 0 {
			// The first subidentifier packs two arcs (X.690 section 8.19.4).
			switch {
			case v < 40:
				arcs = append(arcs, 0, v)
			case v < 80:
				arcs = append(arcs, 1, v-40)
			default:
				arcs = append(arcs, 2, v-80)
			}
		} else {
			arcs = append(arcs, v)
		}
		if len(arcs) > maxOIDArcs {
			return nil, malformed("OBJECT IDENTIFIER has more than %d arcs", maxOIDArcs)
		}
		v = 0
	}
	return asn1.ObjectIdentifier(arcs), nil
}

// readSmallInt decodes an INTEGER that must fit in 31 bits and be
// non-negative, such as a CMSVersion or a tag length.
func readSmallInt(e element, what string) (int, error) {
	if !e.is(classUniversal, tagInteger) || e.constructed {
		return 0, malformed("%s: expected INTEGER, found %s", what, tagString(e.class, e.tag))
	}
	b := e.body
	if len(b) == 0 {
		return 0, malformed("%s: empty INTEGER", what)
	}
	if b[0]&0x80 != 0 {
		return 0, malformed("%s: negative INTEGER", what)
	}
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 4 || (len(b) == 4 && b[0]&0x80 != 0) {
		return 0, malformed("%s: INTEGER too large", what)
	}
	v := 0
	for _, c := range b {
		v = v<<8 | int(c)
	}
	return v, nil
}

// octets returns the value of an OCTET STRING, joining the segments of a
// constructed (BER) string. With inPlace the segments are moved together
// inside e's own bytes, which destroys e's encoding but costs no memory;
// otherwise a new slice is returned when the string is constructed.
func octets(e element, inPlace bool) ([]byte, error) {
	if !e.constructed {
		return e.body, nil
	}
	// Validate (segment tags and nesting) before anything is moved, so
	// that an error never leaves the input half rewritten.
	n, err := segmentsLen(e)
	if err != nil {
		return nil, err
	}
	if inPlace {
		if _, err := joinInPlace(e); err != nil {
			return nil, err
		}
		return e.body[:n], nil
	}
	out := make([]byte, 0, n)
	if err := appendSegments(&out, e); err != nil {
		return nil, err
	}
	return out, nil
}

// checkSegment verifies that a segment of a constructed string is an OCTET
// STRING itself (X.690 section 8.7.3.2).
func checkSegment(s element) error {
	if !s.is(classUniversal, tagOctetString) {
		return malformed("segment of a constructed OCTET STRING is %s", tagString(s.class, s.tag))
	}
	return nil
}

func segmentsLen(e element) (int, error) {
	return segmentsLenAt(e, 0)
}

func segmentsLenAt(e element, nesting int) (int, error) {
	if !e.constructed {
		return len(e.body), nil
	}
	if nesting > maxStringNesting {
		return 0, malformed("constructed OCTET STRING nested more than %d deep", maxStringNesting)
	}
	r, _ := e.children()
	total := 0
	for !r.empty() {
		s, err := r.next()
		if err != nil {
			return 0, err
		}
		if err := checkSegment(s); err != nil {
			return 0, err
		}
		n, err := segmentsLenAt(s, nesting+1)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func appendSegments(out *[]byte, e element) error {
	if !e.constructed {
		*out = append(*out, e.body...)
		return nil
	}
	r, _ := e.children()
	for !r.empty() {
		s, err := r.next()
		if err != nil {
			return err
		}
		if err := checkSegment(s); err != nil {
			return err
		}
		if err := appendSegments(out, s); err != nil {
			return err
		}
	}
	return nil
}

// joinInPlace moves the segments of a constructed string to the start of its
// body and returns the joined length. Every segment has a header of at least
// two bytes, so the write position never passes the read position and no
// unread segment is overwritten.
func joinInPlace(e element) (int, error) {
	r, _ := e.children()
	w := 0
	for !r.empty() {
		s, err := r.next()
		if err != nil {
			return 0, err
		}
		if err := checkSegment(s); err != nil {
			return 0, err
		}
		v := s.body
		if s.constructed {
			n, err := joinInPlace(s)
			if err != nil {
				return 0, err
			}
			v = s.body[:n]
		}
		w += copy(e.body[w:], v)
	}
	return w, nil
}

// toDER re-encodes e with definite lengths, so that a name or algorithm
// identifier read from BER can be compared with, or hashed as, DER. It does
// not sort SET OF members; CMS peers encode names in DER already.
func toDER(e element) ([]byte, error) {
	if !e.constructed {
		return appendHeader(nil, e.class, e.tag, false, len(e.body), e.body), nil
	}
	r, _ := e.children()
	var body []byte
	for !r.empty() {
		c, err := r.next()
		if err != nil {
			return nil, err
		}
		d, err := toDER(c)
		if err != nil {
			return nil, err
		}
		body = append(body, d...)
	}
	return appendHeader(nil, e.class, e.tag, true, len(body), body), nil
}

// appendHeader appends a DER identifier and length for a low tag number,
// then body.
func appendHeader(dst []byte, class, tag int, constructed bool, length int, body []byte) []byte {
	id := byte(class<<6) | byte(tag&0x1f)
	if constructed {
		id |= 0x20
	}
	if tag >= 0x1f {
		id |= 0x1f
		dst = append(dst, id)
		var t [5]byte
		i := len(t) - 1
		t[i] = byte(tag & 0x7f)
		for v := tag >> 7; v > 0; v >>= 7 {
			i--
			t[i] = byte(v&0x7f) | 0x80
		}
		dst = append(dst, t[i:]...)
	} else {
		dst = append(dst, id)
	}
	dst = appendLength(dst, length)
	return append(dst, body...)
}

// appendLength appends a DER length (X.690 section 10.1: minimal form).
func appendLength(dst []byte, n int) []byte {
	if n < 0x80 {
		return append(dst, byte(n))
	}
	var b [8]byte
	i := len(b)
	for v := uint64(n); v > 0; v >>= 8 {
		i--
		b[i] = byte(v)
	}
	dst = append(dst, 0x80|byte(len(b)-i))
	return append(dst, b[i:]...)
}
