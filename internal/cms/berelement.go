package cms

// Element is one BER element (X.690 section 8.1) as ReadElement returns
// it: its class (X.690 section 8.1.2.2: 0 universal, 1 application, 2
// context-specific, 3 private), tag number and form, and its contents
// octets, which alias the input (for an indefinite length, without the
// end-of-contents octets).
type Element struct {
	Class, Tag  int
	Constructed bool
	Body        []byte
}

// ReadElement reads the BER element at the start of b, which sits depth
// levels deep in the structure being read, and returns it with the bytes
// that follow it. It is this package's reader under this package's bounds
// (maxDepth levels of nesting, minimal high tag numbers, lengths checked
// against the input), for a package that walks a CMS structure this one
// does not read itself (smime's SignedData and CompressedData walk), so
// that there is one BER reader. Errors wrap ErrMalformed.
func ReadElement(b []byte, depth int) (Element, []byte, error) {
	e, rest, err := parseElement(b, depth)
	if err != nil {
		return Element{}, nil, err
	}
	return Element{Class: e.class, Tag: e.tag, Constructed: e.constructed, Body: e.body}, rest, nil
}
