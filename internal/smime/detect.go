package smime

import (
	"bytes"
	"encoding/asn1"
	"mime"
	"strings"

	"smimegate/internal/cms"
)

// form is what the outer header says about an encrypted message.
type form struct {
	mediaType string // lower case, e.g. "application/x-pkcs7-mime"
	smimeType string // lower case, "" when missing
	cte       string // Content-Transfer-Encoding, lower case, "" when missing
	// declared is true when the Content-Type itself says S/MIME
	// (pkcs7-mime). Such a message is taken to be encrypted: a body that
	// cannot be read is then a failure (quarantine), never a pass-through.
	// An application/octet-stream named *.p7m is only a guess, and an
	// unreadable one is an ordinary attachment.
	declared bool
}

// detect recognises the encrypted forms found in the wild (RFC 8551 section
// 3.2 and 3.4 and what clients and MTAs make of them): application/pkcs7-mime
// and application/x-pkcs7-mime in any letter case, with smime-type
// enveloped-data, authEnveloped-data or none, and application/octet-stream
// with a name or filename ending in .p7m. Open no longer decides by the label
// alone (the walk looks at every body's content); the label only says what a
// body that turns out not to be CMS at all means: a failure when declared.
func detect(h mimeHeader) (form, bool) {
	mt, params := mediaType(h.contentType)
	f := form{
		mediaType: mt,
		smimeType: strings.ToLower(strings.TrimSpace(params["smime-type"])),
		cte:       h.cte,
	}
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		switch f.smimeType {
		// RFC 8551 section 3.2.2: these smime-types carry no encryption.
		case "signed-data", "certs-only", "compressed-data":
			return f, false
		}
		f.declared = true
		return f, true
	case "application/octet-stream":
		_, dparams := mediaType(h.disposition)
		if isP7M(params["name"]) || isP7M(dparams["filename"]) {
			return f, true
		}
	}
	return f, false
}

func isP7M(name string) bool {
	return strings.HasSuffix(strings.ToLower(strings.TrimSpace(name)), ".p7m")
}

// mediaType parses a Content-Type or Content-Disposition value. It uses
// mime.ParseMediaType (RFC 2045 section 5.1, RFC 2231 continuations) and
// falls back to a tolerant split on ";" and "=" for the mangled values that
// the strict parser refuses, since the point is to recognise what a sender
// meant rather than to judge its syntax.
func mediaType(v string) (string, map[string]string) {
	if v == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params
	}
	parts := strings.Split(v, ";")
	// The type ends at the first space too: "application/x-pkcs7-mime
	// smime-type=..." without its semicolon is still S/MIME.
	mt = strings.ToLower(strings.TrimSpace(parts[0]))
	if f := strings.Fields(mt); len(f) > 0 {
		mt = f[0]
	}
	params = map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := params[k]; !dup {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return mt, params
}

// The content types of a CMS ContentInfo (RFC 5652 section 3) that this
// package tells apart, as the contents octets of their DER encoding (what
// follows tag and length), which is what the readers here compare. The
// identifiers are cms's; only those cms does not read are spelt out here.
var (
	oidEnvelopedData     = oidContents(cms.OIDEnvelopedData)
	oidAuthEnvelopedData = oidContents(cms.OIDAuthEnvelopedData)
	oidSignedData        = oidContents(cms.OIDSignedData)
	// id-data, the eContentType of a MIME entity that S/MIME signs or
	// compresses (RFC 8551 sections 3.5 and 3.6).
	oidData = oidContents(cms.OIDData)
	// RFC 3274 section 1.1: id-ct-compressedData 1.2.840.113549.1.9.16.1.9.
	oidCompressedData = oidContents(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9})
	// RFC 3274 section 2: id-alg-zlibCompress 1.2.840.113549.1.9.16.3.8.
	oidZlibCompress = oidContents(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 8})
)

// oidContents returns the contents octets of oid's DER encoding (X.690
// section 8.19). The identifiers above are short (one length octet), and
// a failure is a programming error, found at start-up.
func oidContents(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil || len(der) < 2 || der[1] >= 0x80 {
		panic("smime: cannot encode OBJECT IDENTIFIER " + oid.String())
	}
	return der[2:]
}

// cmsKind is what the first bytes of a body say it is.
type cmsKind int

const (
	notCMS        cmsKind = iota // not a ContentInfo at all
	cmsOther                     // a ContentInfo that carries nothing to look into (digestedData, ...)
	cmsSigned                    // signedData: its eContent may hold anything
	cmsCompressed                // compressedData: so may its eContent, once inflated
	cmsEncrypted                 // envelopedData or authEnvelopedData
)

// peekLen is how many bytes of a body decide its cmsKind: the outer
// SEQUENCE's tag and at most 5 length octets, then the OBJECT IDENTIFIER's
// tag, length and the 11 octets of the longest OID above, 19 bytes, with
// room to spare.
const peekLen = 32

// peekContentInfo reads the contentType of a BER or DER ContentInfo
// (SEQUENCE { contentType OBJECT IDENTIFIER, content [0] EXPLICIT ANY })
// without parsing the rest, so that a signed or compressed message that a
// sender labelled without smime-type is not mistaken for an encrypted one.
// It also returns the encoding's total length when the outer SEQUENCE has
// a definite one (0 for indefinite), so that bytes an MTA appended after a
// binary body can be cut off.
func peekContentInfo(b []byte) (cmsKind, int) {
	if len(b) < 2 || b[0] != 0x30 {
		return notCMS, 0
	}
	i, total := 2, 0
	switch l := int(b[1]); {
	case l == 0x80: // X.690 section 8.1.3.6: indefinite length.
	case l < 0x80:
		total = 2 + l
	default:
		n := l & 0x7f
		if n > 4 || len(b) < 2+n {
			return notCMS, 0
		}
		for _, c := range b[2 : 2+n] {
			total = total<<8 | int(c)
		}
		i += n
		total += i
	}
	if len(b) < i+2 || b[i] != 0x06 || b[i+1] >= 0x80 || len(b) < i+2+int(b[i+1]) {
		return notCMS, 0
	}
	switch oid := b[i+2 : i+2+int(b[i+1])]; {
	case bytes.Equal(oid, oidEnvelopedData), bytes.Equal(oid, oidAuthEnvelopedData):
		return cmsEncrypted, total
	case bytes.Equal(oid, oidSignedData):
		return cmsSigned, total
	case bytes.Equal(oid, oidCompressedData):
		return cmsCompressed, total
	}
	return cmsOther, total
}
