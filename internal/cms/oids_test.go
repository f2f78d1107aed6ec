package cms

import (
	"crypto"
	"encoding/asn1"
	"testing"
)

// TestExportedOIDs: what other packages compare with is the registered
// identifier (RFC 5652, RFC 5083, RFC 3565, RFC 3370), and DigestByOID
// knows the digests of RFC 3370 and RFC 5754 and nothing else.
func TestExportedOIDs(t *testing.T) {
	for oid, want := range map[string]string{
		OIDData.String():              "1.2.840.113549.1.7.1",
		OIDSignedData.String():        "1.2.840.113549.1.7.2",
		OIDEnvelopedData.String():     "1.2.840.113549.1.7.3",
		OIDAuthEnvelopedData.String(): "1.2.840.113549.1.9.16.1.23",
		OIDAES128CBC.String():         "2.16.840.1.101.3.4.1.2",
		OIDAES192CBC.String():         "2.16.840.1.101.3.4.1.22",
		OIDAES256CBC.String():         "2.16.840.1.101.3.4.1.42",
		OIDDESEDE3CBC.String():        "1.2.840.113549.3.7",
	} {
		if oid != want {
			t.Errorf("%s, want %s", oid, want)
		}
	}
	for oid, want := range map[string]crypto.Hash{
		"1.3.14.3.2.26":          crypto.SHA1,
		"2.16.840.1.101.3.4.2.4": crypto.SHA224,
		"2.16.840.1.101.3.4.2.1": crypto.SHA256,
		"2.16.840.1.101.3.4.2.2": crypto.SHA384,
		"2.16.840.1.101.3.4.2.3": crypto.SHA512,
		"1.2.840.113549.2.5":     0, // MD5: not ours to read
	} {
		var id asn1.ObjectIdentifier
		for _, f := range splitOID(oid) {
			id = append(id, f)
		}
		if h, ok := DigestByOID(id); h != want || ok != (want != 0) {
			t.Errorf("DigestByOID(%s) = %v, %v; want %v", oid, h, ok, want)
		}
	}
	// Every name table entry names an identifier once.
	seen := map[string]string{}
	for _, n := range oidNames {
		if prev, dup := seen[n.oid.String()]; dup {
			t.Errorf("%s is named %q and %q", n.oid, prev, n.name)
		}
		seen[n.oid.String()] = n.name
	}
}

func splitOID(s string) []int {
	var out []int
	n := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, n)
			n = 0
			continue
		}
		n = n*10 + int(s[i]-'0')
	}
	return out
}
