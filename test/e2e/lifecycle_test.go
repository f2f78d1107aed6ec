package e2e

// The certificate lifecycle (issue 15), tried with real parts: a CA made
// with `openssl` (test/pkitest), its CRL served over HTTP by the test, the
// real `openssl ocsp -port` responder; NSD and Unbound for SMIMEA
// (test/dnstest). The gateway is the built binary, seen from outside.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"smimegate/test/dnstest"
	"smimegate/test/pkitest"
)

// lifecycleOptions are a gateway of example.org whose [certs] carries
// more keys, and whose partner directory holds the given files.
type lifecycleOptions struct {
	outbound, inbound string
	certs             string   // more [certs] keys
	ownFiles          []string // copied into certs.own instead of keygen's example.org pair
	partnerFiles      []string // copied into certs.partners
	anchors           []string // copied into certs.trust_anchors (set when not empty)
	extra             string   // more TOML after everything
}

// startLifecycleGateway starts example.org's gateway as startGateway does,
// with the keys of this file in [certs].
func startLifecycleGateway(t *testing.T, o lifecycleOptions) *gateway {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"own", "partners", "anchors"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if len(o.ownFiles) == 0 {
		crt, key := keyFiles("example.org")
		o.ownFiles = []string{crt, key}
	}
	for _, f := range o.ownFiles {
		copyFile(t, f, filepath.Join(dir, "own", filepath.Base(f)))
	}
	for _, f := range o.partnerFiles {
		copyFile(t, f, filepath.Join(dir, "partners", filepath.Base(f)))
	}
	certs := o.certs
	if len(o.anchors) > 0 {
		for _, f := range o.anchors {
			copyFile(t, f, filepath.Join(dir, "anchors", filepath.Base(f)))
		}
		certs += "trust_anchors = \"anchors\"\n"
	}
	g := &gateway{t: t, dir: dir, cfgPath: filepath.Join(dir, "smimegate.toml"), smtp: freeAddr(t), admin: freeAddr(t), log: &syncBuffer{}, exited: make(chan struct{})}
	cfg := fmt.Sprintf(`hostname = "gw.example.org"
state_dir = "state"
local_domains = ["example.org"]

[smtp]
listen = ["%s"]
trusted_networks = ["127.0.0.0/8"]

[relay]
outbound = "%s"
inbound = "%s"
tls = "none"

[certs]
own = "own"
partners = "partners"
%s
[queue]
min_backoff = "1s"
max_backoff = "2s"

[admin]
listen = "%s"
%s
`, g.smtp, o.outbound, o.inbound, certs, g.admin, o.extra)
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(g.stop)
	return g
}

// decryptWith opens a sealed message with `openssl cms -decrypt` and the
// given certificate and key.
func decryptWith(t *testing.T, sealed []byte, crt, key string) ([]byte, error) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.eml")
	if err := os.WriteFile(in, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("openssl", "cms", "-decrypt", "-in", in, "-recip", crt, "-inkey", key, "-binary")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("openssl cms -decrypt: %v: %s", err, stderr.String())
	}
	return out, nil
}

// sealedTo checks that msg is sealed (the secret line is not readable)
// and opens with crt and key.
func sealedTo(t *testing.T, msg []byte, crt, key string) {
	t.Helper()
	if bytes.Contains(msg, []byte(secretLine)) {
		t.Fatal("the message crossed in the clear")
	}
	plain, err := decryptWith(t, msg, crt, key)
	if err != nil || !bytes.Contains(plain, []byte(secretLine)) {
		t.Fatalf("not sealed to %s: %v", filepath.Base(crt), err)
	}
}

// TestRevokedPartnerIsHeld: a partner certificate issued by a CA of the
// trust anchors is used while its OCSP status is good; the CA revokes it,
// SIGHUP re-checks at once, and mail for its domain is held: nothing more
// is encrypted to it, nothing goes in the clear. cert list and cert show
// say so, with the source.
func TestRevokedPartnerIsHeld(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t, "Partner CA")
	crt, key := ca.Issue("example.net")
	ca.StartOCSP()
	transit, inner := startSink(t), startSink(t)
	org := startLifecycleGateway(t, lifecycleOptions{outbound: transit.Addr, inbound: inner.Addr, partnerFiles: []string{crt}, anchors: []string{ca.CertFile}})
	org.waitLog("certificate revocation status")

	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "before"))
	sealedTo(t, waitMessages(t, transit, 1)[0].Data, crt, key)
	if out, err := org.run("cert", "list"); err != nil || !strings.Contains(out, "good until") || !strings.Contains(out, "(OCSP)") {
		t.Errorf("cert list before the revocation: %v\n%s", err, out)
	}

	ca.Revoke(crt)
	org.hup()
	org.waitSample(`smimegate_certificate_usable\{domain="example.net",[^}]*role="partner"[^}]*\} 0`)
	org.expectLog("certificate revoked")

	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "after"))
	// Held: its pass is over, so a delivery, had there been one, was made.
	org.waitRecipient("bob@example.net", "held", "")
	org.expectLog("action=hold domain=example.net")
	if n := transit.Count(); n != 1 {
		t.Fatalf("%d messages crossed; the one for the revoked certificate must not", n)
	}
	out, err := org.run("cert", "show", "example.net")
	if err != nil || !strings.Contains(out, "revoked") || !strings.Contains(out, "keyCompromise") || !strings.Contains(out, "OCSP "+ca.OCSPURL) {
		t.Errorf("cert show after the revocation: %v\n%s", err, out)
	}
	if out, err := org.run("cert", "list"); err != nil || !strings.Contains(out, "revoked (OCSP)") {
		t.Errorf("cert list after the revocation: %v\n%s", err, out)
	}
}

// TestRevocationUnreachable: the responder and the CRL are down from the
// start; past revocation_grace (1s here), strict holds the mail and soft
// sends it encrypted.
func TestRevocationUnreachable(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"strict", "soft"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ca := pkitest.New(t, "Unreachable CA")
			crt, key := ca.Issue("example.net")
			ca.SetCRLDown(true) // and the responder is never started
			transit, inner := startSink(t), startSink(t)
			org := startLifecycleGateway(t, lifecycleOptions{outbound: transit.Addr, inbound: inner.Addr, partnerFiles: []string{crt}, anchors: []string{ca.CertFile},
				certs: fmt.Sprintf("revocation = %q\nrevocation_grace = \"1s\"\n", mode)})
			org.waitLog("certificate revocation status unknown")
			if mode == "strict" {
				// Past the grace the certificate is unusable.
				org.waitSample(`smimegate_certificate_usable\{domain="example.net",[^}]*role="partner"[^}]*\} 0`)
			} else {
				// Soft shows no change past the grace: time is the event.
				time.Sleep(1500 * time.Millisecond)
			}
			mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", mode))
			if mode == "soft" {
				sealedTo(t, waitMessages(t, transit, 1)[0].Data, crt, key)
				return
			}
			org.waitRecipient("bob@example.net", "held", "")
			org.expectLog("action=hold domain=example.net")
			if n := transit.Count(); n != 0 {
				t.Fatalf("strict, status unknown past the grace: %d message(s) left", n)
			}
			if out, _ := org.run("cert", "show", "example.net"); !strings.Contains(out, "revocation unknown") || !strings.Contains(out, "is held") && !strings.Contains(out, "no usable certificate") {
				t.Errorf("cert show:\n%s", out)
			}
		})
	}
}

// TestSMIMEADiscovery: with [discovery] smimea, a partner without a local
// certificate is found in DNS through a validating resolver: a record of a
// signed zone is used; a record of an unsigned zone is not (the mail goes
// in the clear, or is held for a partner that requires encryption); a
// zone whose signatures are broken makes the mail wait, never go in the
// clear.
func TestSMIMEADiscovery(t *testing.T) {
	t.Parallel()
	dnstest.Need(t)
	keys := t.TempDir()
	for _, d := range []string{"signed.test", "unsigned.test", "broken.test"} {
		if out, err := exec.Command(bin, "keygen", "-domain", d, "-key", "p256", "-out", keys).CombinedOutput(); err != nil {
			t.Fatalf("keygen %s: %v\n%s", d, err, out)
		}
	}
	cert := func(d string) string { return filepath.Join(keys, d+".crt") }
	record := func(d string) string {
		data, err := os.ReadFile(cert(d))
		if err != nil {
			t.Fatal(err)
		}
		c := pkitest.ReadCertPEM(t, data)
		return dnstest.SMIMEA("smg_encryptor", d, 3, c)
	}
	res := dnstest.Start(t,
		dnstest.Zone{Name: "signed.test", Signed: true, Records: []string{record("signed.test")}},
		dnstest.Zone{Name: "unsigned.test", Records: []string{record("unsigned.test")}},
		dnstest.Zone{Name: "broken.test", Broken: true, Records: []string{record("broken.test")}},
	)
	transit, inner := startSink(t), startSink(t)
	org := startLifecycleGateway(t, lifecycleOptions{outbound: transit.Addr, inbound: inner.Addr,
		extra: fmt.Sprintf("[discovery]\nsmimea = true\ndns_server = %q\n[policy.partners.\"secure.unsigned.test\"]\nrequire = true\n[policy.partners.\"secure.broken.test\"]\nrequire = true\n", res.Addr)})

	// Signed: sealed to the discovered certificate.
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@signed.test"}, message("alice@example.org", "bob@signed.test", "signed"))
	sealedTo(t, waitMessages(t, transit, 1)[0].Data, cert("signed.test"), filepath.Join(keys, "signed.test.key"))
	if out, err := org.run("cert", "list"); err != nil || !strings.Contains(out, "signed.test") || !strings.Contains(out, "smimea") {
		t.Errorf("cert list does not show the discovered certificate: %v\n%s", err, out)
	}

	// Unsigned: the record is not used; without require the mail goes as
	// it would without discovery, in the clear.
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@unsigned.test"}, message("alice@example.org", "bob@unsigned.test", "unsigned"))
	if m := waitMessages(t, transit, 2)[1]; !bytes.Contains(m.Data, []byte(secretLine)) {
		t.Error("mail to a domain whose SMIMEA record is not authenticated was sealed to it")
	}
	// The same zone for a partner that requires encryption: held.
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@secure.unsigned.test"}, message("alice@example.org", "bob@secure.unsigned.test", "secure unsigned"))
	org.waitRecipient("bob@secure.unsigned.test", "held", "")
	org.expectLog("action=hold domain=secure.unsigned.test")

	// Broken: the lookup fails; the mail waits (and is held with require).
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@broken.test"}, message("alice@example.org", "bob@broken.test", "broken"))
	org.waitRecipient("bob@broken.test", "waiting", "SMIMEA discovery failed")
	org.expectLog("SMIMEA discovery failed: the message waits")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@secure.broken.test"}, message("alice@example.org", "bob@secure.broken.test", "secure broken"))
	// Held: every message's pass is over, so the count below is final.
	org.waitRecipient("bob@secure.broken.test", "held", "")
	org.expectLog("action=hold domain=secure.broken.test")
	if n := transit.Count(); n != 2 {
		t.Fatalf("%d messages crossed; only the signed and the unsigned one may", n)
	}
	out, _ := org.run("cert", "show", "broken.test")
	if !strings.Contains(out, "SERVFAIL") || !strings.Contains(out, "waits in the queue") {
		t.Errorf("cert show broken.test:\n%s", out)
	}
	out, _ = org.run("cert", "show", "signed.test")
	if !strings.Contains(out, "found") || !strings.Contains(out, "used") || !strings.Contains(out, "use   CN=signed.test") {
		t.Errorf("cert show signed.test:\n%s", out)
	}
}

// TestOwnRevokedStillDecrypts: one of our own certificates, issued by a CA
// of the trust anchors, is revoked: the gateway warns (log line and
// metric) and still opens mail encrypted to it.
func TestOwnRevokedStillDecrypts(t *testing.T) {
	t.Parallel()
	ca := pkitest.New(t, "Our CA")
	crt, key := ca.Issue("example.org")
	ca.StartOCSP()
	ca.Revoke(crt)
	inner := startSink(t)
	org := startLifecycleGateway(t, lifecycleOptions{outbound: "127.0.0.1:1", inbound: inner.Addr, ownFiles: []string{crt, key}, anchors: []string{ca.CertFile}})
	org.waitSample("smimegate_own_certificates_revoked 1")
	org.expectLog(`msg="certificate revoked" certificate="own example.org`)
	if m := httpGet(t, "http://"+org.admin+"/metrics"); !strings.Contains(m, "smimegate_own_certificates_revoked 1") || !strings.Contains(m, `smimegate_certificate_usable{domain="example.org"`) {
		t.Errorf("/metrics does not count the revoked own certificate")
	}
	sealed := crlf(runOpenSSL(t, []byte(message("bob@example.net", "alice@example.org", "to a revoked key")), "cms", "-encrypt", "-binary", "-aes-256-gcm", crt))
	mustSend(t, org.smtp, "bob@example.net", []string{"alice@example.org"}, string(sealed))
	if m := waitMessages(t, inner, 1)[0]; !bytes.Contains(m.Data, []byte(secretLine)) {
		t.Fatal("mail encrypted to our revoked certificate was not opened")
	}
}

// runOpenSSL runs openssl with stdin and returns its output.
func runOpenSSL(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v: %s", args, err, stderr.String())
	}
	return out
}

// TestDiscoveryNeverHoldsTheSession: with SMIMEA discovery on and a
// resolver that does not answer, a client's message is accepted at once
// (queued, not relayed first) and the lookup happens in the queue. The
// resolver here is a stand-in that holds every question until the test
// lets it go (no real resolver can be made to wait on cue); its answer is
// an authenticated NXDOMAIN, after which the mail goes as without a
// certificate.
func TestDiscoveryNeverHoldsTheSession(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		m.AuthenticatedData = true
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	transit, inner := startSink(t), startSink(t)
	org := startLifecycleGateway(t, lifecycleOptions{outbound: transit.Addr, inbound: inner.Addr,
		extra: fmt.Sprintf("[discovery]\nsmimea = true\ndns_server = %q\n", pc.LocalAddr().String())})

	sent := make(chan error, 1)
	go func() {
		sent <- send(org.smtp, "alice@example.org", []string{"bob@nowhere.test"}, message("alice@example.org", "bob@nowhere.test", "no waiting"))
	}()
	// The 250 must come while the resolver holds the question: before
	// any lookup has ended (which, now, only a timeout could end).
	var sendErr error
	select {
	case sendErr = <-sent:
	case <-time.After(waitTimeout):
		close(release)
		t.Fatalf("no reply to DATA while the resolver holds the question: the session waited for DNS:\n%s", org.log.String())
	}
	if strings.Contains(org.log.String(), `msg="SMIMEA lookup`) {
		close(release)
		t.Fatalf("no 250 before a lookup ended: the session waited for DNS:\n%s", org.log.String())
	}
	if sendErr != nil {
		close(release)
		t.Fatal(sendErr)
	}
	if got := org.metric(`smimegate_relay_first_total{outcome="discovery"}`); got != `smimegate_relay_first_total{outcome="discovery"} 1` {
		t.Errorf("the message was not queued for discovery: %q", got)
	}
	close(release)
	waitMessages(t, transit, 1)
}
