package smime

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"

	"smimegate/internal/cms"
)

// The walk looks for CMS encrypted content by what bodies contain (the
// ContentInfo's contentType, RFC 5652 section 3), not by what their labels
// say, through multipart bodies (RFC 2046 section 5.1), encapsulated
// messages (RFC 2046 section 5.2.1) and the encapsulated content of
// SignedData and CompressedData (RFC 5652 section 5.2, RFC 3274), so that
// ciphertext to our certificate cannot be relayed still encrypted by hiding
// it under another label or inside another structure (draft-ramsdell
// section 5.2). It is bounded in depth, in parts, in header size and in the
// bytes it decodes, and a message beyond a bound is not passed: what cannot
// be inspected could hide anything.

const (
	// maxDepth bounds the nesting of the walk: a multipart, an
	// encapsulated message or a signed or compressed layer is one level.
	// Real mail nests a few levels (a forwarded message inside a signed
	// multipart/mixed with a multipart/alternative body is five); 16 leaves
	// room for odd clients and bounds the recursion.
	maxDepth = 16

	// maxParts bounds the parts of one message, containers included.
	// Messages with hundreds of attachments are already rare; a thousand
	// bounds the work and the small per-part state of the walk.
	maxParts = 1000
)

// Inspection is what Inspect found. Its fields depend only on what the
// message shows anyone (its structure and the RecipientInfos of its CMS
// parts, matched against certificates), never on a private key.
type Inspection struct {
	// Encrypted: there is CMS encrypted content where Open acts on it (or
	// the message is labelled encrypted but its body is no CMS at all).
	Encrypted bool
	// ForUs: that content names one of the certificates.
	ForUs bool
	// Where names the part: "the message body", "part 2.1
	// (application/octet-stream)".
	Where string
	// Err says why Open would return Failed without trying to decrypt:
	// beyond a bound, malformed, or ciphertext to our certificate in a
	// part where it is not opened.
	Err error
}

// target is the encrypted content that Open decrypts.
type target struct {
	der   []byte // its DER or BER, decoded; aliases the message when raw
	raw   bool   // der aliases the message and must be copied before decryption
	where string
}

// walker holds the state of one walk.
type walker struct {
	certs     []*x509.Certificate
	dopts     cms.DecryptOptions
	maxHeader int
	budget    int64 // bytes the walk may still decode
	maxSize   int64
	parts     int
	peek      [peekLen]byte

	target   *target
	notForUs string // where the first encrypted content not for us is
	ins      Inspection
	stop     bool
}

// node is one entity: the message, a body part, an encapsulated message or
// an encapsulated content.
type node struct {
	path   string // "" for the message, "2.1" for the first part of part 2
	header []byte
	body   []byte
	depth  int
	// openable: encrypted content for us here is opened: the message
	// body itself, and the signed content of a top-level signature
	// (RFC 8551 section 3.7 allows signing the encrypted message).
	openable bool
	// notMIME: an encapsulated content that is no MIME entity (a
	// ContentInfo, or an eContentType other than id-data): it has no
	// header and is looked at only as CMS.
	notMIME bool
}

// name names the node: "the message", "part 2.1".
func (n *node) name() string {
	if n.path == "" {
		return "the message"
	}
	return "part " + n.path
}

// where names the node's body with its media type: "the message body
// (text/plain)", "part 2.1 (application/octet-stream)".
func (n *node) where(mt string) string {
	s := "part " + n.path
	if n.path == "" {
		s = "the message body"
	}
	if mt != "" {
		s += " (" + mt + ")"
	}
	return s
}

// childPath names the i-th child of parent. Paths number the parts of each
// multipart from 1, as IMAP does (RFC 3501 section 6.4.5); the message in a
// message/rfc822 part and the content of a signed or compressed part count
// as that part's only child, number 1.
func childPath(parent string, i int) string {
	if parent == "" {
		return strconv.Itoa(i)
	}
	return parent + "." + strconv.Itoa(i)
}

// inspect walks msg and returns what it found, with the content to decrypt
// when Open should decrypt.
func inspect(msg []byte, certs []*x509.Certificate, opts OpenOptions) (Inspection, *target) {
	maxSize, maxHeader := opts.limits()
	w := &walker{
		certs:     certs,
		dopts:     cms.DecryptOptions{Allow3DES: opts.Allow3DES, MaxSize: maxSize},
		maxHeader: maxHeader,
		budget:    maxSize,
		maxSize:   maxSize,
	}
	header, body := entity(msg)
	w.visit(&node{header: header, body: body, openable: true})
	switch {
	case w.ins.Err != nil:
		return w.ins, nil
	case w.target != nil:
		return Inspection{Encrypted: true, ForUs: true, Where: w.target.where}, w.target
	case w.notForUs != "":
		return Inspection{Encrypted: true, Where: w.notForUs}, nil
	}
	return Inspection{}, nil
}

// fail ends the walk: Open would return Failed with err.
func (w *walker) fail(encrypted, forUs bool, where string, err error) {
	w.ins = Inspection{Encrypted: encrypted, ForUs: forUs, Where: where, Err: err}
	w.stop = true
}

// charge takes n bytes of decoding from the budget, so that nested layers
// (a signed part inside a signed part, each decoded anew) cannot multiply
// the memory the walk holds beyond OpenOptions.MaxSize.
func (w *walker) charge(n int, where string) bool {
	if w.budget -= int64(n); w.budget < 0 {
		w.fail(false, false, where, fmt.Errorf("%w: decoding the parts of the message takes more than %d bytes; it cannot be inspected for ciphertext; not relayed", ErrTooLarge, w.maxSize))
		return false
	}
	return true
}

func (w *walker) visit(n *node) {
	if w.stop {
		return
	}
	if w.parts++; w.parts > maxParts {
		w.fail(false, false, n.name(), fmt.Errorf("more than %d MIME parts: the message cannot be inspected for ciphertext; not relayed", maxParts))
		return
	}
	if n.depth > maxDepth {
		w.fail(false, false, n.name(), fmt.Errorf("MIME structure deeper than %d levels: cannot be inspected for ciphertext; not relayed", maxDepth))
		return
	}
	h, err := scanMIMEHeader(n.header, w.maxHeader)
	if err != nil {
		w.fail(false, false, n.name(), fmt.Errorf("%s: %w; it cannot be inspected for ciphertext; not relayed", n.name(), err))
		return
	}
	mt, params := mediaType(h.contentType)
	where := n.where(mt)
	if h.conflict != "" {
		w.fail(false, false, where, fmt.Errorf("%s has two %s fields that differ: readers disagree on its structure, so it cannot be inspected for ciphertext; not relayed", where, h.conflict))
		return
	}
	f, declared := form{}, false
	if n.path == "" {
		f, declared = detect(h)
		declared = declared && f.declared
	}
	cte := h.cte
	if n.notMIME {
		cte = "binary"
	}
	prefix, enc, err := peekBody(n.body, cte, w.peek[:])
	if err != nil && declared {
		w.fail(true, false, where, fmt.Errorf("open %s: %w", f.mediaType, err))
		return
	}
	// An undeclared body that is not even valid base64 is no CMS.
	kind, total := notCMS, 0
	if err == nil {
		kind, total = peekContentInfo(prefix)
	}
	switch kind {
	case cmsEncrypted:
		w.encrypted(n, where, enc, total)
		return
	case cmsSigned, cmsCompressed:
		w.encapsulated(n, where, enc, kind == cmsCompressed)
		return
	case cmsOther:
		return
	}
	if declared {
		w.fail(true, false, where, fmt.Errorf("open %s: %w: the body is not a CMS ContentInfo", f.mediaType, cms.ErrMalformed))
		return
	}
	if n.notMIME {
		return
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		w.multipart(n, mt, params["boundary"])
	case mt == "message/rfc822" || mt == "message/global":
		w.message(n, where, h.cte)
	}
}

// decode decodes a whole body that peekBody found to be CMS, within the
// size limit and the budget.
func (w *walker) decode(n *node, where string, enc bodyEncoding, total int) ([]byte, bool) {
	if int64(len(n.body)) > w.maxSize {
		w.fail(true, false, where, fmt.Errorf("%s: %w: %d bytes, limit %d", where, ErrTooLarge, len(n.body), w.maxSize))
		return nil, false
	}
	if enc != encRaw && !w.charge(len(n.body), where) {
		return nil, false
	}
	der, err := decodeAs(n.body, enc)
	if err != nil {
		w.fail(true, false, where, fmt.Errorf("%s: %w", where, err))
		return nil, false
	}
	if total > 0 && total < len(der) {
		// Line ends or padding that an MTA appended after a binary body.
		der = der[:total]
	}
	return der, true
}

// encrypted decides about CMS encrypted content.
func (w *walker) encrypted(n *node, where string, enc bodyEncoding, total int) {
	der, ok := w.decode(n, where, enc, total)
	if !ok {
		return
	}
	forUs, err := cms.Addressed(der, w.certs, w.dopts)
	if err != nil {
		w.fail(true, false, where, fmt.Errorf("%s: %w", where, err))
		return
	}
	switch {
	case !forUs:
		// End-to-end S/MIME to a user, or a forwarded smime.p7m.
		if w.notForUs == "" {
			w.notForUs = where
		}
	case n.openable && w.target == nil:
		w.target = &target{der: der, raw: enc == encRaw, where: where}
	default:
		w.fail(true, true, where, fmt.Errorf("ciphertext encrypted to our certificate in %s; not relayed", where))
	}
}

// encapsulated looks into a SignedData or CompressedData. Nothing is
// verified: the content is only searched for ciphertext.
func (w *walker) encapsulated(n *node, where string, enc bodyEncoding, compressed bool) {
	der, ok := w.decode(n, where, enc, 0)
	if !ok {
		return
	}
	ec, err := readEncapsulated(der, compressed)
	if err != nil {
		w.fail(false, false, where, fmt.Errorf("%s: %w; its content cannot be inspected for ciphertext; not relayed", where, err))
		return
	}
	if !ec.present {
		// A detached signature (RFC 8551 section 3.5.3).
		return
	}
	content := ec.content
	if ec.joined && !w.charge(len(content), where) {
		return
	}
	if compressed {
		if content, err = inflate(content, w.budget); err != nil {
			w.fail(false, false, where, fmt.Errorf("%s: %w; it cannot be inspected for ciphertext; not relayed", where, err))
			return
		}
		if !w.charge(len(content), where) {
			return
		}
	}
	c := &node{path: childPath(n.path, 1), depth: n.depth + 1}
	// RFC 8551 section 3.7: a signature over the encrypted message. Only
	// the top-level one is taken off; what it covers is opened.
	c.openable = n.path == "" && !compressed
	if kind, _ := peekContentInfo(content); kind != notCMS || !ec.data {
		// An encapsulated ContentInfo rather than a MIME entity.
		c.body, c.notMIME = content, true
	} else {
		c.header, c.body = entity(content)
	}
	w.visit(c)
}

// multipart visits the body parts of a multipart entity (RFC 2046 section
// 5.1.1). A multipart without a boundary has no parts to visit: readers show
// its body as text.
func (w *walker) multipart(n *node, mt, boundary string) {
	if boundary == "" {
		return
	}
	parts := splitParts(n.body, boundary)
	for i, p := range parts {
		c := &node{path: childPath(n.path, i+1), depth: n.depth + 1}
		c.header, c.body = entity(p)
		// RFC 1847 section 2.1: multipart/signed has exactly two parts,
		// the signed content and the signature.
		c.openable = n.path == "" && mt == "multipart/signed" && len(parts) == 2 && i == 0
		w.visit(c)
		if w.stop {
			return
		}
	}
}

// message visits an encapsulated message. RFC 2046 section 5.2.1 allows
// only 7bit, 8bit and binary, but an encoded one is decoded rather than
// passed unseen.
func (w *walker) message(n *node, where, cte string) {
	body := n.body
	switch cte {
	case "base64", "quoted-printable":
		if !w.charge(len(body), where) {
			return
		}
		var err error
		if body, err = decodeBody(body, cte); err != nil {
			w.fail(false, false, where, fmt.Errorf("%s: %w; it cannot be inspected for ciphertext; not relayed", where, err))
			return
		}
	}
	c := &node{path: childPath(n.path, 1), depth: n.depth + 1}
	c.header, c.body = entity(body)
	w.visit(c)
}

// splitParts returns the body parts of a multipart body. A delimiter line is
// "--" and the boundary at the start of a line, followed by nothing but
// blanks (RFC 2046 section 5.1.1 transport padding), or by "--" for the
// close delimiter; the line end before it belongs to the delimiter. What
// precedes the first delimiter (the preamble) and follows a close delimiter
// (the epilogue) is no part, as every reader agrees; but a delimiter after a
// close delimiter starts a part again, so that no reader finds a part that
// the walk did not see.
func splitParts(body []byte, boundary string) [][]byte {
	delim := "--" + boundary
	var parts [][]byte
	start := -1 // the start of the current part, -1 outside any
	// Search for the delimiter itself rather than going line by line:
	// bytes.Index skips the lines of a large attachment many at a time.
	for i := 0; i < len(body); {
		j := bytes.Index(body[i:], []byte(delim))
		if j < 0 {
			break
		}
		at := i + j
		end := lineEnd(body, at)
		i = end
		if at > 0 && body[at-1] != '\n' {
			// Not at the start of a line: part of the content.
			i = at + 1
			continue
		}
		kind := delimiterKind(body[at:end], delim)
		if kind == 0 {
			continue
		}
		if start >= 0 {
			parts = append(parts, trimLineEnd(body[start:at]))
		}
		start = -1
		if kind == 1 {
			start = end
		}
	}
	if start >= 0 {
		parts = append(parts, body[start:])
	}
	return parts
}

// delimiterKind says whether line is a delimiter (1), a close delimiter (2),
// or neither (0).
func delimiterKind(line []byte, delim string) int {
	if len(line) < len(delim) || string(line[:len(delim)]) != delim {
		return 0
	}
	rest := line[len(delim):]
	kind := 1
	if len(rest) >= 2 && rest[0] == '-' && rest[1] == '-' {
		kind, rest = 2, rest[2:]
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return 0
		}
	}
	return kind
}

// trimLineEnd removes the CRLF or LF that ends b: it belongs to the
// delimiter that follows (RFC 2046 section 5.1.1).
func trimLineEnd(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// entity splits an entity into its header section and body like
// splitHeader, except that text without a single header field before its
// first blank line (or without any blank line) is all body: base64 or DER
// with no header at all is still looked at, as a reader that shows it as
// text would show it.
func entity(b []byte) (header, body []byte) {
	header, body = splitHeader(b)
	if len(header) == 0 {
		return header, body
	}
	s := newHeaderScanner(header)
	if s.next() {
		return header, body
	}
	return nil, b
}
