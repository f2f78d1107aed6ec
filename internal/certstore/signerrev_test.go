package certstore

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
)

// TestSignerRevocation: a domain signer's certificate is checked for
// revocation as a partner's encryption certificate is. A revoked signer
// makes no domain signature; under strict, neither does one whose issuer
// names no OCSP responder and no CRL; a signer seen for the first time is
// checked in the background and stands meanwhile, within the grace.
func TestSignerRevocation(t *testing.T) {
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	signer := pki.issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "example.net signer"},
		EmailAddresses:        []string{"domain-signing-authority@example.net"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		OCSPServer:            []string{pki.ocspURL()},
		CRLDistributionPoints: []string{pki.crlURL()},
	}, newKeyP256(t).Public())
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := revStore(t, clock, r, []*x509.Certificate{pki.ca})

	if err := s.TrustSigner(signer, nil, "example.net", clock.Now()); err != nil {
		t.Fatalf("a new signer, not checked yet, within the grace: %v", err)
	}
	r.CheckNow(context.Background())
	if err := s.TrustSigner(signer, nil, "example.net", clock.Now()); err != nil {
		t.Fatalf("a good signer: %v", err)
	}
	pki.revoke(signer)
	r.CheckNow(context.Background())
	err := s.TrustSigner(signer, nil, "example.net", clock.Now())
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked signer: %v, want its revocation named", err)
	}

	// An issuer that publishes no revocation source: strict refuses the
	// signer, soft takes it.
	sourceless := pki.issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "example.net signer without sources"},
		EmailAddresses:        []string{"domain-signing-authority@example.net"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
	}, newKeyP256(t).Public())
	if err := s.TrustSigner(sourceless, nil, "example.net", clock.Now()); err == nil {
		t.Error("strict: a signer whose status can never be learnt makes domain signatures")
	}
	r.SetPolicy(RevocationSoft, 0, 0)
	if err := s.TrustSigner(sourceless, nil, "example.net", clock.Now()); err != nil {
		t.Errorf("soft: a signer without sources is refused: %v", err)
	}
	if err := s.TrustSigner(signer, nil, "example.net", clock.Now()); err == nil {
		t.Error("soft: a revoked signer makes domain signatures")
	}
}
