package certstore

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"
	"time"
)

func fingerprints(cs []*Cert) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Fingerprint)
	}
	return out
}

// TestLookupMostSpecific covers draft section 4 (docs/threats.md section 1): the most
// specific domain with a certificate wins, sub-domains inherit it.
func TestLookupMostSpecific(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	sub := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@sub.example.net"}})
	parent := makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@example.net"}})
	writeFile(t, partners, "sub.pem", certPEM(sub))
	writeFile(t, partners, "parent.pem", certPEM(parent))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})

	fp := func(c *x509.Certificate) string { return newCert(c, "", naming{}).Fingerprint }
	tests := []struct {
		to, domain, cert string
		rule             string
	}{
		{"sub.example.net", "sub.example.net", fp(sub), "names sub.example.net itself"},
		{"deep.sub.example.net", "sub.example.net", fp(sub), "most specific parent domain with one is sub.example.net"},
		{"DEEP.Sub.Example.NET.", "sub.example.net", fp(sub), "parent domain"},
		{"example.net", "example.net", fp(parent), "names example.net itself"},
		{"other.example.net", "example.net", fp(parent), "parent domain"},
		{"example.org", "", "", "no partner certificate names example.org"},
		{"notexample.net", "", "", "no partner certificate"},
	}
	for _, tc := range tests {
		m := s.Lookup(tc.to)
		if m.Domain != tc.domain {
			t.Errorf("Lookup(%q).Domain = %q, want %q", tc.to, m.Domain, tc.domain)
		}
		got := fingerprints(m.Certs)
		if tc.cert == "" && len(got) != 0 || tc.cert != "" && (len(got) != 1 || got[0] != tc.cert) {
			t.Errorf("Lookup(%q) certs = %v, want %v", tc.to, got, tc.cert)
		}
		if !strings.Contains(m.Rule, tc.rule) {
			t.Errorf("Lookup(%q).Rule = %q, want it to say %q", tc.to, m.Rule, tc.rule)
		}
	}
	if m := s.Lookup("bad domain!"); m.Domain != "" || len(m.Certs) != 0 || !strings.Contains(m.Rule, "not a valid domain") {
		t.Errorf("invalid domain: %+v", m)
	}
}

// TestLookupUnusableMostSpecificFailsClosed: when the most specific domain's
// certificates are all unusable, the parent's certificate is not used
// instead; the match names the domain with no usable certificate.
func TestLookupUnusableMostSpecificFailsClosed(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	writeFile(t, partners, "sub.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@sub.example.net"},
		notAfter: testNow.Add(-time.Hour)})))
	writeFile(t, partners, "parent.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@example.net"}})))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	m := s.Lookup("x.sub.example.net")
	if m.Domain != "sub.example.net" || len(m.Certs) != 0 || len(m.Unusable) != 1 || m.Unusable[0].Status != Expired {
		t.Fatalf("got %+v", m)
	}
	if !strings.Contains(m.Rule, "must not be sent in the clear") {
		t.Errorf("rule %q does not say that the message must not go in the clear", m.Rule)
	}
}

// TestLookupRotation: several usable certificates for a domain are all
// recipients, newest first; an expired one beside them is listed apart.
func TestLookupRotation(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	old := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.net"}, notAfter: testNow.Add(10 * 24 * time.Hour)})
	cur := makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"domain-confidentiality-authority@example.net"}, notAfter: testNow.Add(700 * 24 * time.Hour)})
	gone := makeCert(t, certSpec{key: rsaKey(t, 2), emails: []string{"smg_encryptor@example.net"}, notAfter: testNow.Add(-24 * time.Hour)})
	writeFile(t, partners, "a-old.pem", certPEM(old))
	writeFile(t, partners, "b-new-and-expired.pem", certPEM(cur, gone))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	m := s.Lookup("example.net")
	want := []string{newCert(cur, "", naming{}).Fingerprint, newCert(old, "", naming{}).Fingerprint}
	if got := fingerprints(m.Certs); !slices.Equal(got, want) {
		t.Fatalf("certs %v, want %v (newest first)", got, want)
	}
	if m.Certs[1].Status != ExpiresSoon {
		t.Errorf("the old certificate is %v, want expires soon", m.Certs[1].Status)
	}
	if len(m.Unusable) != 1 || m.Unusable[0].Status != Expired {
		t.Errorf("unusable = %+v", m.Unusable)
	}
	if !strings.Contains(m.Rule, "2 usable certificates") {
		t.Errorf("rule %q", m.Rule)
	}
}

// TestLookupJudgesAtCallTime: a certificate that expires while loaded is
// no longer used, without a reload.
func TestLookupJudgesAtCallTime(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	writeFile(t, partners, "p.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.net"}, notAfter: testNow.Add(time.Hour)})))
	now := testNow
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Now: func() time.Time { return now }})
	if m := s.Lookup("example.net"); len(m.Certs) != 1 {
		t.Fatalf("before expiry: %+v", m)
	}
	now = testNow.Add(2 * time.Hour)
	if m := s.Lookup("example.net"); len(m.Certs) != 0 || len(m.Unusable) != 1 || m.Unusable[0].Status != Expired {
		t.Fatalf("after expiry: %+v", m)
	}
}

// TestDomainNaming: the places a certificate may name its domain, the
// configured local parts, case, several domains, and internationalised
// names compared as A-labels.
func TestDomainNaming(t *testing.T) {
	t.Parallel()
	emailAttr := func(v string) pkix.Name {
		return pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: v}}}
	}
	tests := []struct {
		name    string
		spec    certSpec
		names   []string
		domains []string
		namedBy string
	}{
		{"san smg_encryptor", certSpec{emails: []string{"smg_encryptor@example.net"}}, nil, []string{"example.net"}, "subjectAltName rfc822Name"},
		{"san rfc3183", certSpec{emails: []string{"domain-confidentiality-authority@example.net"}}, nil, []string{"example.net"}, "subjectAltName rfc822Name"},
		{"subject emailAddress", certSpec{subject: emailAttr("smg_encryptor@example.net")}, nil, []string{"example.net"}, "subject emailAddress"},
		{"subject CN (RFC 3183)", certSpec{subject: pkix.Name{CommonName: "domain-confidentiality-authority@example.net"}}, nil, []string{"example.net"}, "subject commonName"},
		{"local part case", certSpec{emails: []string{"SMG_Encryptor@Example.NET"}}, nil, []string{"example.net"}, "subjectAltName"},
		{"several domains", certSpec{emails: []string{"smg_encryptor@b.example", "smg_encryptor@a.example", "smg_encryptor@b.example"}}, nil, []string{"a.example", "b.example"}, ""},
		{"personal address is no domain certificate", certSpec{emails: []string{"alice@example.net"}}, nil, nil, ""},
		{"operator-configured name", certSpec{emails: []string{"securemail@example.net", "smg_encryptor@other.example"}}, []string{"securemail"}, []string{"example.net"}, ""},
		{"A-label", certSpec{emails: []string{"smg_encryptor@xn--bcher-kva.example"}}, nil, []string{"xn--bcher-kva.example"}, ""},
		{"U-label in the subject", certSpec{subject: emailAttr("smg_encryptor@bücher.example")}, nil, []string{"xn--bcher-kva.example"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.key = rsaKey(t, 0)
			names := tc.names
			if names == nil {
				names = DefaultNames
			}
			c := newCert(makeCert(t, tc.spec), "f", naming{names: names})
			if !slices.Equal(c.Domains, tc.domains) {
				t.Fatalf("domains %v, want %v", c.Domains, tc.domains)
			}
			if tc.namedBy != "" && !strings.HasPrefix(c.NamedBy[tc.domains[0]], tc.namedBy) {
				t.Errorf("NamedBy = %q, want %q...", c.NamedBy[tc.domains[0]], tc.namedBy)
			}
		})
	}
}

// TestLookupIDN: mail to a U-label domain finds the certificate that names
// its A-label, and the other way round.
func TestLookupIDN(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	writeFile(t, partners, "idn.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@xn--bcher-kva.example"}})))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	for _, d := range []string{"bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "post.bücher.example"} {
		if m := s.Lookup(d); m.Domain != "xn--bcher-kva.example" || len(m.Certs) != 1 {
			t.Errorf("Lookup(%q) = %+v", d, m)
		}
	}
}

// TestStatusRules: validity period, key usage, extended key usage and key
// size decide whether a partner certificate is used.
func TestStatusRules(t *testing.T) {
	t.Parallel()
	makeTestKeys(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	tests := []struct {
		name   string
		spec   certSpec
		status Status
		reason string
	}{
		{"valid RSA", certSpec{key: rsaKey(t, 0)}, Valid, ""},
		{"RSA without key usage extension", certSpec{key: rsaKey(t, 0), noUsage: true}, Valid, ""},
		{"RSA with keyEncipherment among others", certSpec{key: rsaKey(t, 0), usage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, Valid, ""},
		{"valid EC with keyAgreement", certSpec{key: ecKey(t, 0)}, Valid, ""},
		{"EKU emailProtection", certSpec{key: rsaKey(t, 0), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}, Valid, ""},
		{"EKU any", certSpec{key: rsaKey(t, 0), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, Valid, ""},
		{"expires soon", certSpec{key: rsaKey(t, 0), notAfter: testNow.Add(5 * day)}, ExpiresSoon, "expires on"},
		{"expired", certSpec{key: rsaKey(t, 0), notAfter: testNow.Add(-time.Second)}, Expired, "expired on"},
		{"not yet valid", certSpec{key: rsaKey(t, 0), notBefore: testNow.Add(day)}, NotYetValid, "not valid before"},
		{"RSA signature-only", certSpec{key: rsaKey(t, 0), usage: x509.KeyUsageDigitalSignature}, WrongKeyUsage, "keyEncipherment"},
		{"EC without keyAgreement", certSpec{key: ecKey(t, 0), usage: x509.KeyUsageDigitalSignature}, WrongKeyUsage, "keyAgreement"},
		{"EKU serverAuth only", certSpec{key: rsaKey(t, 0), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, WrongKeyUsage, "emailProtection"},
		{"RSA 1024", certSpec{key: testRSA1024}, BadKey, "1024 bits"},
		{"Ed25519", certSpec{key: edKey, usage: x509.KeyUsageDigitalSignature}, BadKey, "Ed25519"},
		{"bad key beats expiry", certSpec{key: testRSA1024, notAfter: testNow.Add(-day)}, BadKey, "1024"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.emails = []string{"smg_encryptor@example.net"}
			c := newCert(makeCert(t, tc.spec), "f", naming{names: DefaultNames}).evaluated(testNow)
			if c.Status != tc.status || !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("status %v (%q), want %v (%q)", c.Status, c.Reason, tc.status, tc.reason)
			}
			if c.Usable() != (tc.status == Valid || tc.status == ExpiresSoon) {
				t.Errorf("Usable() = %v for %v", c.Usable(), c.Status)
			}
		})
	}
}
