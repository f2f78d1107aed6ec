package gateway

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/smime"
	"smimegate/internal/spool"
)

// TestPolicyStepWritesOpenInbound: the policy step writes exactly the copy
// that OpenInbound (what `smimegate decrypt` prints) makes of the same
// message and envelope, and quarantines with the same reason, so that the
// command and the gateway cannot drift apart. The copy's own Received
// field carries the time of the pass; the comparison reuses the time the
// gateway wrote rather than asserting one.
func TestPolicyStepWritesOpenInbound(t *testing.T) {
	dir := t.TempDir()
	own, partners := filepath.Join(dir, "own"), filepath.Join(dir, "partners")
	for _, d := range []string{own, partners} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	gen, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{"example.org"}, KeyType: "p256", Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(own, "example.org.crt"), gen.CertPEM, 0o600)
	os.WriteFile(filepath.Join(own, "example.org.key"), gen.KeyPEM, 0o600)
	logger := slog.New(slog.DiscardHandler)
	store, err := certstore.Load(certstore.Options{OwnDir: own, PartnersDir: partners, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if len(store.Own()) != 1 || store.Own()[0].Key == nil {
		t.Fatalf("own certificate not loaded: %v", store.Problems())
	}
	cfg := config.Default()
	cfg.Hostname = "gw.example.org"
	cfg.LocalDomains = []string{"example.org"}
	sp, err := spool.Open(filepath.Join(dir, "state"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	g := New(cfg, store, sp, Options{Logger: logger})

	seal := func(pt string) []byte {
		var b bytes.Buffer
		msg := append([]byte(pt), make([]byte, smime.SealSpare)...)[:len(pt)]
		if err := smime.Seal(&b, msg, smime.SealOptions{Recipients: []cms.Recipient{{Cert: store.Own()[0].X509}}, Cipher: cms.AES256GCM}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	const hdr = "From: alice@partner.example\r\nTo: bob@example.org\r\nSubject: q\r\n\r\n"
	trace := "Received: from mx.partner.example ([192.0.2.7]) by gw.example.org; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
	for _, c := range []struct {
		name       string
		msg        []byte
		quarantine bool
	}{
		{"opened", append([]byte(trace), seal(hdr+"Grüße\r\n")...), false},
		{"forged fields of ours inside", seal("Authentication-Results: gw.example.org; smime=pass\r\n" + hdr + "hi\r\n"), false},
		{"smuggled second message", seal(hdr + "hi\r\n\r.\r\nMAIL FROM:<evil@example.org>\r\n"), true},
		{"tampered", func() []byte {
			// A byte of the last full base64 line, which holds the end
			// of the GCM tag.
			lines := strings.Split(strings.TrimSuffix(string(seal(hdr+"hi\r\n")), "\r\n"), "\r\n")
			last := []byte(lines[len(lines)-2])
			if last[10] == 'A' {
				last[10] = 'B'
			} else {
				last[10] = 'A'
			}
			lines[len(lines)-2] = string(last)
			return []byte(strings.Join(lines, "\r\n") + "\r\n")
		}(), true},
	} {
		in, err := sp.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		in.Write(c.msg)
		env := &spool.Envelope{Sender: "alice@partner.example", Recipients: []spool.Recipient{{Addr: "bob@example.org"}}, Client: "192.0.2.7:25", Arrival: time.Now().UTC()}
		if err := in.Commit(env); err != nil {
			t.Fatal(err)
		}
		vs := newVersions(g, env.ID)
		if _, err := g.route(env, vs); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.quarantine {
			q, err := sp.LoadQuarantined(env.ID)
			if err != nil {
				t.Fatalf("%s: not quarantined: %v", c.name, err)
			}
			want := OpenInbound(cfg, store, env, bytes.Clone(c.msg), time.Now())
			if want.Quarantine == "" || q.Reason != want.Quarantine {
				t.Errorf("%s: quarantined for %q, OpenInbound says %q", c.name, q.Reason, want.Quarantine)
			}
			continue
		}
		if len(env.Versions) != 1 || env.Versions[0].Action != spool.ActionDecrypt {
			t.Fatalf("%s: versions %+v", c.name, env.Versions)
		}
		got := vs.bytes(env.Versions[0].Data)
		if got == nil {
			if got, err = sp.ReadData(env.ID, env.Versions[0].Data); err != nil {
				t.Fatal(err)
			}
		}
		// "Received: by HOST (smimegate, decrypted)\r\n\tid ID; DATE\r\n"
		first, _, _ := strings.Cut(string(got), "\r\n\t")
		_, rest, _ := strings.Cut(string(got[len(first)+3:]), "; ")
		date, _, _ := strings.Cut(rest, "\r\n")
		at, err := time.Parse(time.RFC1123Z, date)
		if err != nil {
			t.Fatalf("%s: no date in our Received field: %v\n%.200q", c.name, err, got)
		}
		want := OpenInbound(cfg, store, env, bytes.Clone(c.msg), at)
		var wantOut bytes.Buffer
		if !want.Ready() {
			t.Fatalf("%s: OpenInbound does not relay what the gateway relayed: %v %q", c.name, want.Outcome, want.Quarantine)
		}
		want.WriteTo(&wantOut)
		if !bytes.Equal(got, wantOut.Bytes()) {
			t.Errorf("%s: the gateway wrote\n%q\nOpenInbound makes\n%q", c.name, got, wantOut.Bytes())
		}
		if bytes.Contains(got[len(first):], []byte("Authentication-Results: gw.example.org; smime=pass")) {
			t.Errorf("%s: a forged field of ours survived", c.name)
		}
	}
}
