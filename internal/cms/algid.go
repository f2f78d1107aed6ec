package cms

import (
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// algID is an AlgorithmIdentifier (RFC 5280 section 4.1.1.2) as read from
// the input.
type algID struct {
	oid       asn1.ObjectIdentifier
	params    element
	hasParams bool
	elem      element // the whole AlgorithmIdentifier, for re-encoding
}

// paramsAbsentOrNull reports whether the parameters are absent or NULL,
// which RFC 4055 section 2.1 and RFC 5754 treat as equivalent for digests.
func (a algID) paramsAbsentOrNull() bool {
	return !a.hasParams || (a.params.is(classUniversal, tagNull) && !a.params.constructed && len(a.params.body) == 0)
}

func readAlgID(e element, what string) (algID, error) {
	if !e.is(classUniversal, tagSequence) || !e.constructed {
		return algID{}, malformed("%s: expected an AlgorithmIdentifier SEQUENCE, found %s", what, tagString(e.class, e.tag))
	}
	r, _ := e.children()
	oe, err := r.nextIs(classUniversal, tagOID, what+" algorithm")
	if err != nil {
		return algID{}, err
	}
	oid, err := readOID(oe)
	if err != nil {
		return algID{}, err
	}
	a := algID{oid: oid, elem: e}
	if !r.empty() {
		a.params, err = r.next()
		if err != nil {
			return algID{}, err
		}
		a.hasParams = true
	}
	if !r.empty() {
		return algID{}, malformed("%s: trailing data in AlgorithmIdentifier", what)
	}
	return a, nil
}

// addAlgID writes an AlgorithmIdentifier whose parameters, if any, are
// written by params.
func addAlgID(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, params cryptobyte.BuilderContinuation) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params != nil {
			params(b)
		}
	})
}

// addNull writes an ASN.1 NULL.
func addNull(b *cryptobyte.Builder) { b.AddASN1NULL() }
