package certstore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// FuzzVerifyOCSP runs our OCSP scanner and the whole verification (the
// library's parser under it) over arbitrary bytes: never a panic, and
// never an accepted answer that another signer made.
func FuzzVerifyOCSP(f *testing.F) {
	clock := newTestClock()
	pki := newTestPKI(f, clock)
	leaf := pki.partner("example.net", newKeyP256(f))
	now := clock.Now()
	for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
		der, err := ocsp.CreateResponse(pki.ca, pki.ca, ocsp.Response{Status: st, SerialNumber: leaf.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour), RevokedAt: now}, pki.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add(ocsp.TryLaterErrorResponse)
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		scanOCSP(der)
		a, err := verifyOCSP(der, leaf, pki.ca, "fuzz", time.Hour)
		if err == nil && a.Until.Before(a.ThisUpdate) {
			t.Fatalf("accepted an answer that ends before it starts: %+v", a)
		}
	})
}

// FuzzParseCRL runs the CRL splitter, the entry scanner and the checks
// over arbitrary bytes.
func FuzzParseCRL(f *testing.F) {
	clock := newTestClock()
	pki := newTestPKI(f, clock)
	leaf := pki.partner("example.net", newKeyP256(f))
	now := clock.Now()
	f.Add(pki.makeCRL(now, nil, nil))
	f.Add(pki.makeCRL(now, []x509.RevocationListEntry{
		{SerialNumber: leaf.SerialNumber, RevocationTime: now, ReasonCode: 1},
		{SerialNumber: big.NewInt(255), RevocationTime: now},
	}, []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: []byte{0x30, 0x03, 0x82, 0x01, 0xff}}}))
	f.Fuzz(func(t *testing.T, der []byte) {
		ix, err := parseCRL(der, pki.ca, "fuzz", time.Hour)
		if err != nil {
			return
		}
		// A CRL that verified was signed by the CA: only bytes from the
		// seeds get here, and the index must be usable.
		ix.covers(leaf)
		ix.lookup(leaf.SerialNumber)
		for i := 1; i < len(ix.serials); i++ {
			if ix.serials[i-1] > ix.serials[i] {
				t.Fatal("the index is not sorted")
			}
		}
	})
}

// FuzzParseIssuingDP: the issuing distribution point parser alone, which
// the signature check keeps FuzzParseCRL from reaching with most inputs.
func FuzzParseIssuingDP(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0x82, 0x01, 0xff})
	f.Add([]byte{0x30, 0x0a, 0xa0, 0x08, 0xa0, 0x06, 0x86, 0x04, 'h', 't', 't', 'p'})
	f.Add([]byte{0x30, 0x04, 0x83, 0x02, 0x07, 0x80})
	f.Fuzz(func(t *testing.T, der []byte) {
		parseIssuingDP(der)
	})
}

// FuzzCRLEntries: the entry scanner alone, for the same reason.
func FuzzCRLEntries(f *testing.F) {
	clock := newTestClock()
	pki := newTestPKI(f, clock)
	der := pki.makeCRL(clock.Now(), []x509.RevocationListEntry{{SerialNumber: big.NewInt(300), RevocationTime: clock.Now(), ReasonCode: 4}}, nil)
	if _, _, entries, err := splitCRL(der); err == nil {
		f.Add([]byte(entries))
	}
	f.Fuzz(func(t *testing.T, entries []byte) {
		ix := &crlIndex{}
		if ix.scanEntries(entries) == nil {
			ix.lookup(big.NewInt(300))
		}
		splitCRL(entries)
	})
}
