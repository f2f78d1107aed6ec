package cms

// BERToDER re-encodes one BER element that fills b with definite lengths
// (X.690 section 10.1), so that a DER-only reader (encoding/asn1,
// cryptobyte, crypto/x509) can take what a streaming encoder wrote with
// indefinite lengths (X.690 section 8.1.3.6), as `openssl cms -stream` and
// `openssl crl2pkcs7` piped through a streaming tool do for PKCS#7 bundles.
// Only lengths change: identifiers and primitive contents are copied, so a
// certificate that was DER inside the BER comes out byte for byte and keeps
// its signature. Constructed strings stay constructed and SET OF members
// stay in their order; a reader that needs strict DER still checks that.
//
// It is the reader of this package under the same bounds (maxDepth,
// minimal high tag numbers, lengths checked against the input), so the
// re-encoding costs at most maxDepth passes over b; errors wrap
// ErrMalformed.
func BERToDER(b []byte) ([]byte, error) {
	e, rest, err := parseElement(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, malformed("%d bytes after the element", len(rest))
	}
	return toDER(e)
}
