package policy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"smimegate/internal/certstore"
)

// TestRequirePQ: with require_pq a partner's mail is encrypted to its
// post-quantum certificates only, and held when it has none (even none at
// all); without it every usable certificate is a recipient, as during a
// migration from RSA or ECDH to ML-KEM.
func TestRequirePQ(t *testing.T) {
	dir := t.TempDir()
	own, part := filepath.Join(dir, "own"), filepath.Join(dir, "partners")
	for _, d := range []string{own, part} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	now := func() time.Time { return time.Now() }
	for _, c := range []struct{ domain, kind string }{
		{"example.net", "p256"}, {"example.net", "mlkem768-x25519"},
		{"migrating.test", "p256"}, {"migrating.test", "mlkem768"},
		{"classic.test", "p256"},
	} {
		var pem []byte
		if certstore.IsKEMKeyType(c.kind) {
			g, err := certstore.GenerateKEM(certstore.KEMKeygenOptions{KeygenOptions: certstore.KeygenOptions{Domains: []string{c.domain}, KeyType: c.kind, Now: now}})
			if err != nil {
				t.Fatal(err)
			}
			pem = g.CertPEM
		} else {
			g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{c.domain}, KeyType: c.kind, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			pem = g.CertPEM
		}
		if err := os.WriteFile(filepath.Join(part, c.domain+"-"+c.kind+".crt"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certs, err := certstore.Load(certstore.Options{OwnDir: own, PartnersDir: part})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, `
[policy.partners."example.net"]
require_pq = true
[policy.partners."classic.test"]
require_pq = true
[policy.partners."nothing.test"]
require_pq = true
`)
	for _, c := range []struct {
		rcpt   string
		action Action
		certs  int
		pq     bool
	}{
		{"a@example.net", Encrypt, 1, true},
		{"a@sub.example.net", Encrypt, 1, true}, // the entry covers sub-domains
		{"a@migrating.test", Encrypt, 2, false}, // no require_pq: both certificates
		{"a@classic.test", Hold, 0, false},      // only P-256: held, not sealed to it
		{"a@nothing.test", Hold, 0, false},      // no certificate at all: held, not passed
	} {
		g := Classify(cfg, certs, "alice@example.org", true, []string{c.rcpt}).Groups[0]
		if g.Action != c.action || len(g.Match.Certs) != c.certs {
			t.Errorf("%s: %s to %d certificate(s), want %s to %d (%s)", c.rcpt, g.Action, len(g.Match.Certs), c.action, c.certs, g.Match.Rule)
			continue
		}
		for _, mc := range g.Match.Certs {
			if c.pq && !mc.PostQuantum() {
				t.Errorf("%s: sealed to a %s certificate", c.rcpt, mc.KeyType())
			}
		}
	}
}
