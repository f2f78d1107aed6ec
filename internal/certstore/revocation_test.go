package certstore

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// lookupOne looks domain up and returns the single certificate it found,
// usable or not.
func lookupOne(t *testing.T, s *Store, domain string) (*Cert, Match) {
	t.Helper()
	m := s.Lookup(domain)
	all := append(append([]*Cert{}, m.Certs...), m.Unusable...)
	if len(all) != 1 {
		t.Fatalf("Lookup(%s): %d certificates, want 1 (%s)", domain, len(all), m.Rule)
	}
	return all[0], m
}

// TestRevocationOCSPThenRevoked: a partner certificate is checked by OCSP;
// once the CA revokes it, the next check makes it unusable: the lookup
// finds no certificate to encrypt to, and the domain still "has" one (so
// the policy holds the mail rather than sending it in the clear).
func TestRevocationOCSPThenRevoked(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	leaf := pki.partner("example.net", newKeyP256(t))
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf)

	c, _ := lookupOne(t, s, "example.net")
	if !c.Usable() || c.Revocation.State != RevUnknown {
		t.Fatalf("before any check: %s, revocation %s; want usable within the grace, status unknown", c.Status, c.Revocation.Summary())
	}
	r.CheckNow(context.Background())
	c, m := lookupOne(t, s, "example.net")
	if !c.Usable() || c.Revocation.State != RevGood || !strings.HasPrefix(c.Revocation.Source, "OCSP "+pki.ocspURL()) {
		t.Fatalf("after the check: %s (%s), revocation %s; want good per OCSP", c.Status, c.Reason, c.Revocation.Summary())
	}
	if len(m.Certs) != 1 {
		t.Fatalf("a good certificate is not used: %s", m.Rule)
	}
	if o, crl := pki.hits(); o != 1 || crl != 0 {
		t.Errorf("OCSP first, CRL only as a fallback: %d OCSP and %d CRL fetches", o, crl)
	}

	pki.revoke(leaf)
	r.CheckNow(context.Background())
	c, m = lookupOne(t, s, "example.net")
	if c.Usable() || c.Status != Revoked || len(m.Certs) != 0 || m.Domain != "example.net" {
		t.Fatalf("revoked: status %s (%s), %d usable, domain %q; want Revoked, none usable, the domain kept", c.Status, c.Reason, len(m.Certs), m.Domain)
	}
	if !strings.Contains(c.Reason, "keyCompromise") || !strings.Contains(c.Reason, "OCSP") {
		t.Errorf("the reason should say when, why and from where: %s", c.Reason)
	}
	// A soft policy also refuses a known revocation.
	r.SetPolicy(RevocationSoft, 0, 0)
	if c, _ := lookupOne(t, s, "example.net"); c.Usable() {
		t.Errorf("soft: a revoked certificate is usable")
	}
}

// TestRevocationCRLFallback: with the responder down, the CRL decides.
func TestRevocationCRLFallback(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	leaf := pki.partner("example.net", newKeyP256(t))
	other := pki.partner("example.com", newKeyP256(t))
	pki.set(func(p *testPKI) { p.ocspDown = true })
	pki.revoke(leaf)
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf, other)
	r.CheckNow(context.Background())

	c, _ := lookupOne(t, s, "example.net")
	if c.Status != Revoked || !strings.Contains(c.Revocation.Source, "CRL "+pki.crlURL()) {
		t.Fatalf("listed in the CRL: %s, %s; want revoked per CRL", c.Status, c.Revocation.Summary())
	}
	c, _ = lookupOne(t, s, "example.com")
	if !c.Usable() || c.Revocation.State != RevGood || !strings.HasPrefix(c.Revocation.Source, "CRL ") {
		t.Fatalf("not listed in the CRL: %s, %s; want good per CRL", c.Status, c.Revocation.Summary())
	}
	if _, crl := pki.hits(); crl != 1 {
		t.Errorf("two certificates of one CA share one CRL fetch; got %d fetches", crl)
	}
}

// TestRevocationGrace: with the responder and the CRL down, strict keeps a
// certificate usable for the grace period and then not; soft keeps it;
// an issuer that publishes no revocation source at all fails strict at
// once. The clock is moved by hand.
func TestRevocationGrace(t *testing.T) {
	for _, mode := range []RevocationMode{RevocationStrict, RevocationSoft} {
		t.Run(mode.String(), func(t *testing.T) {
			clock := newTestClock()
			pki := newTestPKI(t, clock)
			leaf := pki.partner("example.net", newKeyP256(t))
			bare := pki.issue(&x509.Certificate{
				Subject: pkix.Name{CommonName: "bare"}, EmailAddresses: []string{"smg_encryptor@bare.test"},
				KeyUsage: x509.KeyUsageKeyAgreement, BasicConstraintsValid: true,
			}, newKeyP256(t).Public())
			pki.set(func(p *testPKI) { p.ocspDown, p.crlDown = true, true })
			r := newTestRevocation(t, clock, mode, "")
			s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf, bare)
			r.CheckNow(context.Background())

			c, _ := lookupOne(t, s, "example.net")
			if !c.Usable() || c.Revocation.State != RevUnknown || !strings.Contains(c.Revocation.Err, "503") {
				t.Fatalf("within the grace: %s, %s; want usable, unknown with the fetch errors", c.Status, c.Revocation.Summary())
			}
			clock.Add(25 * time.Hour)
			r.CheckNow(context.Background())
			c, m := lookupOne(t, s, "example.net")
			switch {
			case mode == RevocationStrict && (c.Usable() || c.Status != RevocationUnknown || len(m.Certs) != 0):
				t.Errorf("strict, past the grace: %s (%s); want unusable", c.Status, c.Reason)
			case mode == RevocationSoft && !c.Usable():
				t.Errorf("soft, past the grace: %s (%s); want usable", c.Status, c.Reason)
			}
			b, _ := lookupOne(t, s, "bare.test")
			switch {
			case mode == RevocationStrict && (b.Usable() || !strings.Contains(b.Reason, "neither an OCSP responder nor")):
				t.Errorf("strict, an issuer with no revocation source: %s (%s); want unusable at once", b.Status, b.Reason)
			case mode == RevocationSoft && !b.Usable():
				t.Errorf("soft, an issuer with no revocation source: %s (%s); want usable", b.Status, b.Reason)
			}
			// The responder is back: usable again.
			pki.set(func(p *testPKI) { p.ocspDown, p.crlDown = false, false })
			r.CheckNow(context.Background())
			if c, _ := lookupOne(t, s, "example.net"); !c.Usable() || c.Revocation.State != RevGood {
				t.Errorf("the responder is back: %s, %s", c.Status, c.Revocation.Summary())
			}
		})
	}
}

// TestRevocationAnswerExpires: a good answer is trusted until its
// nextUpdate, then the status is unknown again (and the grace counts from
// then); revocation_max_age caps an answer whose nextUpdate is far.
func TestRevocationAnswerExpires(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	pki.set(func(p *testPKI) { p.validity = 30 * 24 * time.Hour })
	leaf := pki.partner("example.net", newKeyP256(t))
	r := NewRevocation(RevocationOptions{Mode: RevocationStrict, Grace: time.Hour, MaxAge: 2 * time.Hour, Now: clock.Now})
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf)
	r.CheckNow(context.Background())
	c, _ := lookupOne(t, s, "example.net")
	if c.Revocation.State != RevGood || c.Revocation.Until.Sub(c.Revocation.ThisUpdate) != 2*time.Hour {
		t.Fatalf("a 30-day answer under a 2h maximum age: %s", c.Revocation.Summary())
	}
	pki.set(func(p *testPKI) { p.ocspDown, p.crlDown = true, true })
	clock.Add(2 * time.Hour)
	if c, _ := lookupOne(t, s, "example.net"); !c.Usable() || c.Revocation.State != RevUnknown {
		t.Fatalf("just past the answer: %s, %s; want unknown, usable (grace)", c.Status, c.Revocation.Summary())
	}
	clock.Add(time.Hour)
	if c, _ := lookupOne(t, s, "example.net"); c.Usable() {
		t.Fatalf("an hour past the answer, grace 1h: %s; want unusable", c.Status)
	}
}

// TestRevocationCache: answers survive a restart (a new Revocation on the
// same directory answers without fetching), and so does the start of the
// grace: a restart does not give a certificate whose status is unknown a
// new grace period.
func TestRevocationCache(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	leaf := pki.partner("example.net", newKeyP256(t))
	down := pki.partner("down.example", newKeyP256(t))
	pki.revoke(down)
	dir := t.TempDir()

	r := newTestRevocation(t, clock, RevocationStrict, dir)
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf, down)
	r.CheckNow(context.Background())
	if c, _ := lookupOne(t, s, "example.net"); c.Revocation.State != RevGood {
		t.Fatalf("first run: %s", c.Revocation.Summary())
	}

	// Restart with everything down: the cached answers stand.
	pki.set(func(p *testPKI) { p.ocspDown, p.crlDown = true, true })
	o1, c1 := pki.hits()
	clock.Add(time.Hour)
	r2 := newTestRevocation(t, clock, RevocationStrict, dir)
	s2 := revStore(t, clock, r2, []*x509.Certificate{pki.ca}, leaf, down)
	if c, _ := lookupOne(t, s2, "example.net"); c.Revocation.State != RevGood {
		t.Errorf("after a restart: %s; want the cached good answer", c.Revocation.Summary())
	}
	if c, _ := lookupOne(t, s2, "down.example"); c.Status != Revoked {
		t.Errorf("after a restart: %s; want the cached revocation", c.Status)
	}
	if o2, c2 := pki.hits(); o2 != o1 || c2 != c1 {
		t.Errorf("loading the cache fetched: OCSP %d -> %d, CRL %d -> %d", o1, o2, c1, c2)
	}

	// A certificate never learnt: its grace started at the first run.
	fresh := pki.partner("fresh.example", newKeyP256(t))
	r3 := newTestRevocation(t, clock, RevocationStrict, dir)
	s3 := revStore(t, clock, r3, []*x509.Certificate{pki.ca}, fresh)
	r3.CheckNow(context.Background()) // fails: everything is down; writes the state
	clock.Add(23 * time.Hour)
	r4 := newTestRevocation(t, clock, RevocationStrict, dir)
	s4 := revStore(t, clock, r4, []*x509.Certificate{pki.ca}, fresh)
	_ = s3
	if c, _ := lookupOne(t, s4, "fresh.example"); !c.Usable() {
		t.Fatalf("23h into the grace: %s", c.Status)
	}
	clock.Add(2 * time.Hour)
	if c, _ := lookupOne(t, s4, "fresh.example"); c.Usable() {
		t.Fatalf("the restart gave a new grace: 25h after the first check, %s (%s)", c.Status, c.Revocation.Summary())
	}
}

// TestRevocationIntermediate: a revoked intermediate CA makes the
// certificates under it unusable; the chain is checked link by link.
func TestRevocationIntermediate(t *testing.T) {
	clock := newTestClock()
	root := newTestPKI(t, clock)
	inter := root.intermediate(clock)
	leaf := inter.partner("example.net", newKeyP256(t))
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := revStore(t, clock, r, []*x509.Certificate{root.ca}, leaf, inter.ca)
	r.CheckNow(context.Background())
	if c, _ := lookupOne(t, s, "example.net"); !c.Usable() || c.Revocation.State != RevGood {
		t.Fatalf("good chain: %s, %s", c.Status, c.Revocation.Summary())
	}
	root.revoke(inter.ca)
	r.CheckNow(context.Background())
	c, _ := lookupOne(t, s, "example.net")
	if c.Status != Revoked || !strings.Contains(c.Reason, "Test Intermediate CA") {
		t.Fatalf("revoked intermediate: %s (%s); want revoked, naming the CA", c.Status, c.Reason)
	}
}

// TestRevocationOwnCertificate: our own certificate, issued by a CA of the
// trust anchors, is checked too; revoked, it is marked so (for the
// operator) and its key stays, so mail encrypted to it still opens.
func TestRevocationOwnCertificate(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	key := newKeyP256(t)
	own := pki.partner("example.org", key)
	pki.revoke(own)
	ownDir, part := testDirs(t)
	writeFile(t, ownDir, "example.org.pem", append(certPEM(own), keyPEM(t, key)...))
	writeFile(t, part, "ca.pem", certPEM(pki.ca))
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := mustLoad(t, Options{OwnDir: ownDir, PartnersDir: part, TrustDir: part, Now: clock.Now, Revocation: r})
	r.CheckNow(context.Background())
	var got *Cert
	for _, c := range s.Own() {
		got = c
	}
	if got == nil || got.Status != Revoked || got.Key == nil {
		t.Fatalf("own revoked certificate: %+v; want status revoked with its key", got)
	}
}

// TestLookupNeverWaitsForTheNetwork: while a CRL fetch hangs, lookups
// answer from what is known. The test would hang (and time out) if a
// lookup waited for the fetch.
func TestLookupNeverWaitsForTheNetwork(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	leaf := pki.partner("example.net", newKeyP256(t))
	release := make(chan struct{})
	pki.set(func(p *testPKI) { p.ocspDown, p.crlBlocks = true, release })
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca}, leaf)
	done := make(chan struct{})
	go func() { r.CheckNow(context.Background()); close(done) }()
	for {
		if _, crl := pki.hits(); crl > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for range 100 {
		if c, _ := lookupOne(t, s, "example.net"); !c.Usable() {
			t.Fatalf("within the grace while the fetch hangs: %s", c.Status)
		}
	}
	close(release)
	<-done
}

// TestCRLTooLarge: a CRL beyond maxCRLBytes is refused with an error that
// says so, whether its size is announced or not, without reading it all.
func TestCRLTooLarge(t *testing.T) {
	for _, announce := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if announce {
				w.Header().Set("Content-Length", fmt.Sprint(50<<20))
			}
			chunk := make([]byte, 1<<20)
			for range 50 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		f := newFetcher(nil)
		_, err := f.get(context.Background(), "CRL", srv.URL+"/big.crl", nil, "", maxCRLBytes)
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "16 MiB") || !strings.Contains(err.Error(), "refused") {
			t.Errorf("announced %v: %v; want a refusal naming the limit", announce, err)
		}
	}
}

// TestOCSPSigner: who may sign an OCSP response (RFC 6960 section 4.2.2.2)
// and about what (section 3.2). Each row is a response that must be
// refused, but for the first two.
func TestOCSPSigner(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	other := newTestPKI(t, clock)
	stranger := newNamedPKI(t, clock, "Another CA")
	leaf := pki.partner("example.net", newKeyP256(t))
	responderKey := newKeyP256(t)
	delegate := func(eku []x509.ExtKeyUsage, notAfter time.Time, by *testPKI) *x509.Certificate {
		return by.issue(&x509.Certificate{Subject: pkix.Name{CommonName: "responder"}, ExtKeyUsage: eku, NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}, responderKey.Public())
	}
	now := clock.Now()
	good := ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
	sign := func(issuer, signer *x509.Certificate, key crypto.Signer, tmpl ocsp.Response) []byte {
		if signer != issuer {
			tmpl.Certificate = signer
		}
		der, err := ocsp.CreateResponse(issuer, signer, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	// CertID names our CA, but another key signed it, with no certificate.
	forged, err := ocsp.CreateResponse(pki.ca, other.ca, good, other.key)
	if err != nil {
		t.Fatal(err)
	}
	// Signed by our CA, but its responderID names another responder.
	misnamed, err := ocsp.CreateResponse(pki.ca, stranger.ca, good, pki.key)
	if err != nil {
		t.Fatal(err)
	}
	otherSerial := good
	otherSerial.SerialNumber = new(big.Int).Add(leaf.SerialNumber, big.NewInt(1000))
	cases := []struct {
		name string
		der  []byte
		want string // "" accepted
	}{
		{"signed by the CA", sign(pki.ca, pki.ca, pki.key, good), ""},
		{"delegated responder", sign(pki.ca, delegate([]x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, time.Time{}, pki), responderKey, good), ""},
		{"a certificate of the CA without OCSPSigning", sign(pki.ca, delegate([]x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, time.Time{}, pki), responderKey, good), "not an OCSP responder"},
		{"an expired delegated responder", sign(pki.ca, delegate([]x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, now.Add(-2*time.Minute), pki), responderKey, good), "not valid when it signed"},
		{"a responder of another CA of the same name", sign(pki.ca, delegate([]x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, time.Time{}, other), responderKey, good), "not signed by the certificate's issuer"},
		{"a responder of a CA of another name", sign(pki.ca, delegate([]x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, time.Time{}, stranger), responderKey, good), "did not issue"},
		{"signed by another CA", sign(other.ca, other.ca, other.key, good), "another issuer"},
		{"signed by a CA of another name", sign(stranger.ca, stranger.ca, stranger.key, good), "another issuer"},
		{"about our CA's certificate, signed by another key", forged, "not signed by the certificate's issuer"},
		{"a responderID that names another responder", misnamed, "responderID names another"},
		{"about another serial", sign(pki.ca, pki.ca, pki.key, otherSerial), "no response matching"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := verifyOCSP(c.der, leaf, pki.ca, "test", time.Hour)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestCRLChecks: the checks of RFC 5280 section 6.3.3 on a CRL's frame.
func TestCRLChecks(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	other := newTestPKI(t, clock)
	stranger := newNamedPKI(t, clock, "Another CA")
	leaf := pki.partner("example.net", newKeyP256(t))
	now := clock.Now()
	entry := []x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: now.Add(-time.Hour)}}
	ext := func(oid asn1.ObjectIdentifier, critical bool, value []byte) []pkix.Extension {
		return []pkix.Extension{{Id: oid, Critical: critical, Value: value}}
	}
	idp := func(fields ...[]byte) []byte {
		var body []byte
		for _, f := range fields {
			body = append(body, f...)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	uriDP := func(u string) []byte { // [0] { [0] { [6] u } }
		n := append([]byte{0x86, byte(len(u))}, u...)
		full := append([]byte{0xa0, byte(len(n))}, n...)
		return append([]byte{0xa0, byte(len(full))}, full...)
	}
	onlyCA := []byte{0x82, 0x01, 0xff}
	someReasons := []byte{0x83, 0x02, 0x07, 0x80}
	entryWithIssuer := []x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: now.Add(-time.Hour),
		ExtraExtensions: ext(oidCertificateIssue, true, []byte{0x30, 0x00})}}
	entryCritical := []x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: now.Add(-time.Hour),
		ExtraExtensions: ext(asn1.ObjectIdentifier{1, 2, 3, 4}, true, []byte{0x05, 0x00})}}
	cases := []struct {
		name     string
		der      []byte
		err      string // the CRL is refused with this
		covers   bool
		complete bool
		revoked  bool
	}{
		{"plain", pki.makeCRL(now, entry, nil), "", true, true, true},
		{"empty", pki.makeCRL(now, nil, nil), "", true, true, false},
		{"signed by another CA of the same name", other.makeCRL(now, entry, nil), "does not verify", false, false, false},
		{"issued by another CA", stranger.makeCRL(now, entry, nil), "issued by", false, false, false},
		{"a delta CRL", pki.makeCRL(now, entry, ext(oidDeltaCRL, true, []byte{0x02, 0x01, 0x01})), "delta CRL", false, false, false},
		{"an unknown critical extension", pki.makeCRL(now, entry, ext(asn1.ObjectIdentifier{1, 2, 3, 4}, true, []byte{0x05, 0x00})), "critical extension", false, false, false},
		{"an indirect CRL entry", pki.makeCRL(now, entryWithIssuer, nil), "indirect", false, false, false},
		{"an unknown critical entry extension", pki.makeCRL(now, entryCritical, nil), "critical extension", false, false, false},
		{"IDP: CA certificates only", pki.makeCRL(now, entry, ext(oidIssuingDP, true, idp(onlyCA))), "", false, false, false},
		{"IDP: another distribution point", pki.makeCRL(now, entry, ext(oidIssuingDP, true, idp(uriDP("http://elsewhere.test/x.crl")))), "", false, false, false},
		{"IDP: this distribution point", pki.makeCRL(now, entry, ext(oidIssuingDP, true, idp(uriDP(pki.crlURL())))), "", true, true, true},
		{"IDP: some reasons only", pki.makeCRL(now, nil, ext(oidIssuingDP, true, idp(someReasons))), "", true, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ix, err := parseCRL(c.der, pki.ca, pki.crlURL(), time.Hour)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want an error with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			covers, complete, _ := ix.covers(leaf)
			a := ix.answer(leaf)
			revoked := a != nil && a.Revoked
			if covers != c.covers || complete != c.complete || revoked != c.revoked {
				t.Errorf("covers %v complete %v revoked %v, want %v %v %v", covers, complete, revoked, c.covers, c.complete, c.revoked)
			}
		})
	}
}

// TestCRLIndexMatchesGo: the entry scanner finds exactly the serial numbers
// Go's own parser finds, whatever their length and sign bit.
func TestCRLIndexMatchesGo(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	var entries []x509.RevocationListEntry
	for i, s := range []int64{1, 127, 128, 255, 256, 65535, 1 << 40} {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: testNow.Add(-time.Duration(i) * time.Hour)})
	}
	big20, _ := new(big.Int).SetString("ffeeddccbbaa99887766554433221100ffeedd", 16)
	entries = append(entries, x509.RevocationListEntry{SerialNumber: big20, RevocationTime: testNow})
	der := pki.makeCRL(testNow, entries, nil)
	ix, err := parseCRL(der, pki.ca, "x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.serials) != len(rl.RevokedCertificateEntries) {
		t.Fatalf("%d entries, Go has %d", len(ix.serials), len(rl.RevokedCertificateEntries))
	}
	for _, e := range rl.RevokedCertificateEntries {
		if ok, at, _ := ix.lookup(e.SerialNumber); !ok || !at.Equal(e.RevocationTime.Truncate(time.Second)) {
			t.Errorf("serial %x: listed %v at %v, Go says %v", e.SerialNumber, ok, at, e.RevocationTime)
		}
	}
	for _, s := range []int64{0, 2, 129, 257} {
		if ok, _, _ := ix.lookup(big.NewInt(s)); ok {
			t.Errorf("serial %d is not listed, the index says it is", s)
		}
	}
}
