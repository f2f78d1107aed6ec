package certstore

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"smimegate/test/dnstest"
)

// domainCert makes a self-signed domain certificate for domain as keygen
// does, valid around the test clock.
func domainCert(t *testing.T, clock *testClock, domain string) *x509.Certificate {
	t.Helper()
	g, err := Generate(KeygenOptions{Domains: []string{domain}, KeyType: "p256", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return g.Cert
}

// discoveryStore loads a Store with discovery through server (and, with
// pki, that CA as trust anchor); local holds partner certificates.
func discoveryStore(t *testing.T, clock *testClock, server, dir string, pki *testPKI, local ...*x509.Certificate) *Store {
	t.Helper()
	own, part := testDirs(t)
	if len(local) > 0 {
		writeFile(t, part, "local.pem", certPEM(local...))
	}
	opts := Options{OwnDir: own, PartnersDir: part, Now: clock.Now,
		Discovery: NewDiscovery(DiscoveryOptions{Server: server, Dir: dir, Now: clock.Now})}
	if pki != nil {
		trust := filepath.Join(filepath.Dir(own), "anchors")
		os.Mkdir(trust, 0o700)
		writeFile(t, trust, "ca.pem", certPEM(pki.ca))
		opts.TrustDir = trust
	}
	s, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSMIMEADiscovery looks domain certificates up through a real
// validating resolver (Unbound) in front of a real authoritative server
// (NSD): a record of a signed zone is used; one of an unsigned zone, or of
// a zone whose signatures are broken, is not; a failure makes the mail
// wait, never go in the clear.
func TestSMIMEADiscovery(t *testing.T) {
	dnstest.Need(t)
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	signed := domainCert(t, clock, "signed.test")
	unsigned := domainCert(t, clock, "unsigned.test")
	broken := domainCert(t, clock, "broken.test")
	wrongName := domainCert(t, clock, "elsewhere.test")
	pkixEE := pki.issue(&x509.Certificate{Subject: pkix.Name{CommonName: "pkix.signed.test"}, EmailAddresses: []string{"smg_encryptor@pkix.signed.test"},
		KeyUsage: x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}, newKeyP256(t).Public())
	unchained := domainCert(t, clock, "unchained.signed.test")
	expiredClock := &testClock{now: testNow.Add(-2 * 365 * 24 * time.Hour)}
	expired, err := Generate(KeygenOptions{Domains: []string{"expired.signed.test"}, KeyType: "p256", Days: 30, Now: expiredClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	res := dnstest.Start(t,
		dnstest.Zone{Name: "signed.test", Signed: true, Records: []string{
			dnstest.SMIMEA("smg_encryptor", "signed.test", 3, signed),
			dnstest.SMIMEA("smg_encryptor", "pkix.signed.test", 1, pkixEE),
			dnstest.SMIMEA("smg_encryptor", "unchained.signed.test", 1, unchained),
			dnstest.SMIMEA("smg_encryptor", "wrong.signed.test", 3, wrongName),
			dnstest.SMIMEA("smg_encryptor", "expired.signed.test", 3, expired.Cert),
			// Only the second name publishes: it is asked about too.
			dnstest.SMIMEA("domain-confidentiality-authority", "dca.signed.test", 3, domainCert(t, clock, "dca.signed.test")),
		}},
		// A signed zone without a record at its apex.
		dnstest.Zone{Name: "plain.test", Signed: true, Records: []string{
			dnstest.SMIMEARaw("smg_encryptor", "spki.plain.test", 3, 1, 0, signed.RawSubjectPublicKeyInfo),
			dnstest.SMIMEARaw("smg_encryptor", "hash.plain.test", 3, 0, 1, make([]byte, 32)),
		}},
		dnstest.Zone{Name: "unsigned.test", Records: []string{dnstest.SMIMEA("smg_encryptor", "unsigned.test", 3, unsigned)}},
		dnstest.Zone{Name: "broken.test", Broken: true, Records: []string{dnstest.SMIMEA("smg_encryptor", "broken.test", 3, broken)}},
	)
	s := discoveryStore(t, clock, res.Addr, t.TempDir(), pki)
	ctx := context.Background()

	// Before the lookup, the cache has no answer: the domain "has" a
	// certificate-to-be and the mail waits.
	if m := s.Lookup("signed.test"); m.Deferred == "" || m.Domain == "" || len(m.Certs) > 0 {
		t.Fatalf("before discovery: %+v; want deferred, domain set, no certificate", m)
	}
	if !s.DiscoveryPending("signed.test") {
		t.Error("DiscoveryPending is false before any lookup")
	}

	cases := []struct {
		domain   string
		err      bool   // Discover fails
		certs    int    // usable certificates found
		domainOf string // Match.Domain ("" for none: the mail would pass)
		rule     string // in Match.Rule or a reason
	}{
		{"signed.test", false, 1, "signed.test", "SMIMEA"},
		{"deep.sub.signed.test", false, 1, "signed.test", "SMIMEA"}, // most specific first, then the parent
		{"pkix.signed.test", false, 1, "pkix.signed.test", ""},
		{"unchained.signed.test", false, 0, "unchained.signed.test", "does not chain"},
		{"wrong.signed.test", false, 0, "wrong.signed.test", "does not name"},
		{"expired.signed.test", false, 0, "expired.signed.test", "expired"},
		{"spki.plain.test", false, 0, "", "selector 1"},
		{"hash.plain.test", false, 0, "", "matching type 1"},
		{"dca.signed.test", false, 1, "dca.signed.test", ""},
		{"nothing.plain.test", false, 0, "", "no DNSSEC-validated SMIMEA record"},
		{"unsigned.test", false, 0, "", "did not authenticate"},
		{"broken.test", true, 0, "broken.test", "SERVFAIL"},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			err := s.Discover(ctx, c.domain)
			if (err != nil) != c.err {
				t.Fatalf("Discover: %v, want error %v", err, c.err)
			}
			m := s.Lookup(c.domain)
			text := m.Rule
			for _, u := range m.Unusable {
				text += " " + u.Reason
			}
			if len(m.Certs) != c.certs || m.Domain != c.domainOf || !strings.Contains(text, c.rule) {
				t.Fatalf("Lookup: %d usable, domain %q, rule %q; want %d, %q, %q", len(m.Certs), m.Domain, text, c.certs, c.domainOf, c.rule)
			}
			for _, x := range m.Certs {
				if x.Source != SourceSMIMEA {
					t.Errorf("a discovered certificate has source %q", x.Source)
				}
			}
			if c.err && (m.Deferred == "" || len(m.Certs) > 0) {
				t.Errorf("a failed lookup must defer: %+v", m)
			}
		})
	}
	if n := len(s.Discovered()); n != 6 {
		t.Errorf("Discovered lists %d certificates, want the 6 of the records with certificates", n)
	}

	// A local certificate wins; an unusable local one stops the walk at
	// its domain (no parent's record is used for a sub-domain that has
	// its own, unusable, certificate).
	stale, err := Generate(KeygenOptions{Domains: []string{"sub.signed.test"}, KeyType: "p256", Days: 30, Now: expiredClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s2 := discoveryStore(t, clock, res.Addr, "", nil, stale.Cert)
	if err := s2.Discover(ctx, "deep.sub.signed.test"); err != nil {
		t.Fatal(err)
	}
	if m := s2.Lookup("deep.sub.signed.test"); len(m.Certs) != 0 || m.Domain != "sub.signed.test" {
		t.Errorf("with an expired local certificate for sub.signed.test: %d usable, domain %q; want none, sub.signed.test", len(m.Certs), m.Domain)
	}

	lines, err := s.ExplainDiscovery(ctx, "wrong.signed.test")
	if err != nil || len(lines) == 0 || !strings.Contains(strings.Join(lines[0].Records, " "), "not used") {
		t.Errorf("ExplainDiscovery: %v %+v", err, lines)
	}
}

// TestSMIMEACache: answers survive a restart (a new Discovery on the same
// directory answers with no resolver at all) until they expire.
func TestSMIMEACache(t *testing.T) {
	dnstest.Need(t)
	clock := newTestClock()
	cert := domainCert(t, clock, "signed.test")
	res := dnstest.Start(t, dnstest.Zone{Name: "signed.test", Signed: true, Records: []string{dnstest.SMIMEA("smg_encryptor", "signed.test", 3, cert)}})
	dir := t.TempDir()
	s := discoveryStore(t, clock, res.Addr, dir, nil)
	if err := s.Discover(context.Background(), "signed.test"); err != nil {
		t.Fatal(err)
	}
	// No resolver: 127.0.0.1:1 answers nothing.
	s2 := discoveryStore(t, clock, "127.0.0.1:1", dir, nil)
	if m := s2.Lookup("signed.test"); len(m.Certs) != 1 {
		t.Fatalf("after a restart: %s", m.Rule)
	}
	// The record's TTL (300 s) is raised to the minimum of 5 minutes;
	// past it the answer is gone and the lookup fails: the mail waits.
	clock.Add(minDiscoveryTTL + time.Second)
	if m := s2.Lookup("signed.test"); m.Deferred == "" {
		t.Fatalf("an expired answer is still used: %s", m.Rule)
	}
	if err := s2.Discover(context.Background(), "signed.test"); err == nil {
		t.Fatal("a lookup without a resolver succeeded")
	}
	if m := s2.Lookup("signed.test"); m.Deferred == "" || len(m.Certs) > 0 {
		t.Fatalf("a failed lookup: %+v", m)
	}
}

// TestJudgeSMIMEA: the verdict on resolver answers, without DNS.
func TestJudgeSMIMEA(t *testing.T) {
	now := testNow
	owner := OwnerName("smg_encryptor", "example.net")
	cert := &dns.SMIMEA{Hdr: dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeSMIMEA, Class: dns.ClassINET, Ttl: 10}, Usage: 3, Certificate: "3082"}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: "example.net.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 7 * 86400}, Minttl: 7 * 86400}
	msg := func(ad bool, rcode int, answer ...dns.RR) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(owner), dns.TypeSMIMEA)
		m.Response, m.AuthenticatedData, m.Rcode, m.Answer = true, ad, rcode, answer
		m.Ns = []dns.RR{soa}
		return m
	}
	cases := []struct {
		name    string
		in      *dns.Msg
		outcome string
		ttl     time.Duration
	}{
		{"authenticated record", msg(true, dns.RcodeSuccess, cert), outcomeFound, minDiscoveryTTL},
		{"unauthenticated record", msg(false, dns.RcodeSuccess, cert), outcomeInsecure, minDiscoveryTTL},
		{"authenticated NXDOMAIN, long negative TTL", msg(true, dns.RcodeNameError), outcomeNone, maxDiscoveryTTL},
		{"SERVFAIL", msg(false, dns.RcodeServerFailure), outcomeFailed, failureTTL},
		{"REFUSED", msg(false, dns.RcodeRefused), outcomeFailed, failureTTL},
	}
	for _, c := range cases {
		e := judgeSMIMEA(&smimeaEntry{Owner: owner}, c.in, now)
		if e.Outcome != c.outcome || e.Expires.Sub(now) != c.ttl {
			t.Errorf("%s: %s for %s (%s), want %s for %s", c.name, e.Outcome, e.Expires.Sub(now), e.Why, c.outcome, c.ttl)
		}
		if e.Outcome == outcomeInsecure && len(e.Records) > 0 {
			t.Errorf("%s: an insecure answer keeps its records", c.name)
		}
	}
	other := msg(true, dns.RcodeSuccess, cert)
	other.Question[0].Name = "other.example."
	if e := judgeSMIMEA(&smimeaEntry{Owner: owner}, other, now); e.Outcome != outcomeFailed {
		t.Errorf("an answer to another question: %s", e.Outcome)
	}
}

// TestOwnerName is RFC 8162 section 3's example: the owner name of
// hugh@example.com.
func TestOwnerName(t *testing.T) {
	want := "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com"
	if got := OwnerName("hugh", "example.com"); got != want {
		t.Errorf("OwnerName(hugh, example.com) = %s, want %s", got, want)
	}
}

// FuzzJudgeSMIMEA feeds arbitrary DNS messages to the verdict.
func FuzzJudgeSMIMEA(f *testing.F) {
	owner := OwnerName("smg_encryptor", "example.net")
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(owner), dns.TypeSMIMEA)
	m.AuthenticatedData = true
	m.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "x.example.net."},
		&dns.SMIMEA{Hdr: dns.RR_Header{Name: "x.example.net.", Rrtype: dns.TypeSMIMEA, Class: dns.ClassINET, Ttl: 600}, Usage: 3, Certificate: "3082"},
	}
	if b, err := m.Pack(); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := new(dns.Msg)
		if in.Unpack(b) != nil {
			return
		}
		e := judgeSMIMEA(&smimeaEntry{Owner: owner}, in, testNow)
		if e.Outcome == outcomeFound && !in.AuthenticatedData {
			t.Fatal("found records in an unauthenticated answer")
		}
		if d := e.Expires.Sub(testNow); d < failureTTL || d > maxDiscoveryTTL {
			t.Fatalf("expiry %s outside the bounds", d)
		}
		e.parsedRecords()
	})
}

// TestSMIMEARevocation: a discovered usage 1 certificate is checked for
// revocation like a local one; revoked, it is not used.
func TestSMIMEARevocation(t *testing.T) {
	dnstest.Need(t)
	clock := newTestClock()
	pki := newTestPKI(t, clock)
	leaf := pki.partner("signed.test", newKeyP256(t))
	pki.revoke(leaf)
	res := dnstest.Start(t, dnstest.Zone{Name: "signed.test", Signed: true, Records: []string{dnstest.SMIMEA("smg_encryptor", "signed.test", 1, leaf)}})
	own, part := testDirs(t)
	trust := filepath.Join(filepath.Dir(own), "anchors")
	os.Mkdir(trust, 0o700)
	writeFile(t, trust, "ca.pem", certPEM(pki.ca))
	r := newTestRevocation(t, clock, RevocationStrict, "")
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: part, TrustDir: trust, Now: clock.Now, Revocation: r,
		Discovery: NewDiscovery(DiscoveryOptions{Server: res.Addr, Now: clock.Now})})
	if err := s.Discover(context.Background(), "signed.test"); err != nil {
		t.Fatal(err)
	}
	if m := s.Lookup("signed.test"); len(m.Certs) != 1 {
		t.Fatalf("within the grace, before any check: %s", m.Rule)
	}
	// The discovered chain is handed to the Revocation off the lookup's
	// path; check until it has been.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.CheckNow(context.Background())
		m := s.Lookup("signed.test")
		if len(m.Unusable) == 1 && m.Unusable[0].Status == Revoked && len(m.Certs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked discovered certificate is still used: %s", m.Rule)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
