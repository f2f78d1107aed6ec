package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
)

// store builds a real certificate store with partner certificates for the
// given domains (P-256 keys: quick to make). expired names domains whose
// only certificate has expired.
func store(t *testing.T, partners, expired []string) *certstore.Store {
	t.Helper()
	dir := t.TempDir()
	own, part := filepath.Join(dir, "own"), filepath.Join(dir, "partners")
	for _, d := range []string{own, part} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(domain string, now time.Time) {
		g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{domain}, KeyType: "p256", Days: 30, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(part, domain+".crt"), g.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range partners {
		write(d, time.Now())
	}
	for _, d := range expired {
		write(d, time.Now().Add(-90*24*time.Hour))
	}
	s, err := certstore.Load(certstore.Options{OwnDir: own, PartnersDir: part, Names: certstore.DefaultNames})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(`local_domains = ["example.org"]
[relay]
inbound = "127.0.0.1:25"
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestClassify(t *testing.T) {
	certs := store(t, []string{"example.net", "sub.example.net"}, []string{"stale.test"})
	cfg := testConfig(t, `
[policy.partners."secure.test"]
require = true
`)
	cases := []struct {
		name    string
		sender  string
		trusted bool
		rcpt    string
		dir     Direction
		action  Action
		certDom string
	}{
		{"local recipient", "alice@example.org", true, "bob@example.org", Outbound, Local, ""},
		{"sub-domain of a local domain is local", "alice@example.org", true, "bob@dept.example.org", Outbound, Local, ""},
		{"partner domain", "alice@example.org", true, "bob@example.net", Outbound, Encrypt, "example.net"},
		{"most specific certificate", "alice@example.org", true, "x@deep.sub.example.net", Outbound, Encrypt, "sub.example.net"},
		{"parent certificate", "alice@example.org", true, "x@other.example.net", Outbound, Encrypt, "example.net"},
		{"upper case domain", "alice@EXAMPLE.ORG", true, "Bob@Example.NET", Outbound, Encrypt, "example.net"},
		{"no certificate", "alice@example.org", true, "carol@plain.test", Outbound, Pass, ""},
		{"required partner without certificate", "alice@example.org", true, "x@secure.test", Outbound, Hold, ""},
		{"only an expired certificate: fail closed", "alice@example.org", true, "x@stale.test", Outbound, Hold, "stale.test"},
		{"inbound from a partner", "bob@example.net", false, "alice@example.org", Inbound, Local, ""},
		{"null sender from a trusted client is ours", "", true, "x@example.net", Outbound, Encrypt, "example.net"},
		{"null sender from outside is inbound", "", false, "alice@example.org", Inbound, Local, ""},
		{"relayed inbound to a partner is still sealed", "someone@elsewhere.test", true, "bob@example.net", Inbound, Encrypt, "example.net"},
		// An outsider cannot make mail outbound by writing a local sender.
		{"local sender from outside is inbound", "anything@example.org", false, "alice@example.org", Inbound, Local, ""},
		{"local sub-domain sender from outside is inbound", "x@dept.example.org", false, "alice@example.org", Inbound, Local, ""},
		// Domains that do not canonicalise are never "no certificate" (a
		// pass in the clear), whatever parent domain has a certificate.
		{"R-LDH label under a partner", "alice@example.org", true, "bob@ab--cd.example.net", Outbound, Refuse, ""},
		{"fake A-label under a partner", "alice@example.org", true, "bob@xn--zz.example.net", Outbound, Refuse, ""},
		{"underscore under a partner", "alice@example.org", true, "bob@a_b.example.net", Outbound, Refuse, ""},
		{"address literal", "alice@example.org", true, "bob@[192.0.2.1]", Outbound, Refuse, ""},
		{"invalid sender domain is not local", "alice@xn--zz.example.org", true, "bob@example.org", Inbound, Local, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Classify(cfg, certs, c.sender, c.trusted, []string{c.rcpt})
			if p.Direction != c.dir {
				t.Errorf("direction %s, want %s", p.Direction, c.dir)
			}
			if len(p.Groups) != 1 {
				t.Fatalf("%d groups", len(p.Groups))
			}
			g := p.Groups[0]
			if g.Action != c.action {
				t.Errorf("action %s, want %s", g.Action, c.action)
			}
			if g.Match.Domain != c.certDom {
				t.Errorf("certificate domain %q, want %q", g.Match.Domain, c.certDom)
			}
		})
	}
}

func TestMixedAndGrouping(t *testing.T) {
	certs := store(t, []string{"example.net"}, nil)
	cfg := testConfig(t, "")
	p := Classify(cfg, certs, "alice@example.org", true, []string{"a@example.net", "carol@plain.test", "b@example.net", "erin@example.org"})
	if len(p.Groups) != 3 {
		t.Fatalf("%d groups, want 3 (one per domain)", len(p.Groups))
	}
	if got := p.Groups[0].Recipients; len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Errorf("example.net recipients %v, want [0 2]", got)
	}
	if !p.Mixed() {
		t.Error("partner plus plain domain is mixed")
	}
	if msg := MixedRejection(p); msg == "" || !strings.Contains(msg, "example.net") || !strings.Contains(msg, "plain.test") {
		t.Errorf("rejection text %q names neither side", msg)
	}
	// Local recipients never make a message mixed.
	p = Classify(cfg, certs, "alice@example.org", true, []string{"a@example.net", "erin@example.org"})
	if p.Mixed() {
		t.Error("partner plus local recipient is not mixed")
	}
}

func TestDomain(t *testing.T) {
	for in, want := range map[string]struct {
		domain string
		ok     bool
	}{
		"a@Example.ORG":          {"example.org", true},
		"a@example.org.":         {"example.org", true},
		"\"x@y\"@example.org":    {"example.org", true},
		"a@bücher.example":       {"xn--bcher-kva.example", true},
		"no-at-sign":             {"", false},
		"a@\xff\xfe.example.org": {strings.ToLower("\xff\xfe.example.org"), false},
		"a@AB--cd.example.net":   {"ab--cd.example.net", false},
		"a@xn--zz.example.net":   {"xn--zz.example.net", false},
		"a@[192.0.2.1]":          {"[192.0.2.1]", false},
	} {
		if d, ok := Domain(in); d != want.domain || ok != want.ok {
			t.Errorf("Domain(%q) = %q, %v, want %q, %v", in, d, ok, want.domain, want.ok)
		}
	}
}

// TestRefusedDomainsNeverJoinAValidGroup: an invalid domain is its own
// group even when it lower-cases to the same text as nothing valid, and it
// makes a message neither secured nor unsecured.
func TestRefusedDomainsNeverJoinAValidGroup(t *testing.T) {
	certs := store(t, []string{"example.net"}, nil)
	cfg := testConfig(t, "")
	p := Classify(cfg, certs, "alice@example.org", true, []string{"a@example.net", "b@xn--zz.example.net", "c@XN--ZZ.example.net"})
	if len(p.Groups) != 2 {
		t.Fatalf("%d groups, want 2", len(p.Groups))
	}
	if g := p.Groups[1]; g.Action != Refuse || len(g.Recipients) != 2 {
		t.Errorf("group %+v, want both invalid recipients refused together", g)
	}
	if p.Unsecured() || p.Mixed() {
		t.Error("refused recipients count as unsecured")
	}
}
