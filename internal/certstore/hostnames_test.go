package certstore

import (
	"crypto/x509"
	"net/url"
	"slices"
	"testing"
)

// TestHostNamesMarkDomains: with HostNames (the default in the gateway's
// configuration), a subjectAltName dNSName or smtp:// URI names a domain
// (docs/threats.md section 2); wildcards never do; without HostNames only the
// mailbox forms count. A TLS server certificate names its host but is not
// usable for encryption.
func TestHostNamesMarkDomains(t *testing.T) {
	makeTestKeys(t)
	smtpURI, _ := url.Parse("smtp://Mail.Example.NET")
	host := makeCert(t, certSpec{key: ecKey(t, 0), dnsNames: []string{"example.net", "*.example.net"}, uris: []*url.URL{smtpURI}})
	with := newCert(host, "f", naming{names: DefaultNames, hosts: true}).evaluated(testNow)
	if want := []string{"example.net", "mail.example.net"}; !slices.Equal(with.Domains, want) {
		t.Errorf("domains with host names: %v, want %v", with.Domains, want)
	}
	if !with.Usable() {
		t.Errorf("a key-agreement certificate named by dNSName should be usable: %s", with.Reason)
	}
	if got := with.NamedBy["mail.example.net"]; got != "subjectAltName URI Mail.Example.NET" {
		t.Errorf("NamedBy = %q", got)
	}
	if without := newCert(host, "f", naming{names: DefaultNames}); len(without.Domains) != 0 {
		t.Errorf("without host names the certificate names %v", without.Domains)
	}

	tlsServer := makeCert(t, certSpec{key: ecKey(t, 1), dnsNames: []string{"www.example.net"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if c := newCert(tlsServer, "f", naming{names: DefaultNames, hosts: true}).evaluated(testNow); c.Usable() {
		t.Error("a TLS server certificate (serverAuth only) must not be usable for encryption")
	}
}
