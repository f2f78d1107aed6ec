package gateway

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
	"smimegate/test/pkitest"
)

// The gateway's decision table under unit test: a message goes through the
// same Check and Handoff the receiver calls, over a real spool in a
// temporary directory and a scripted courier (fakecourier_test.go); every
// row says what left (sealed to whom, opened, passed byte for byte), what
// stayed (queued, held, waiting, quarantined, bounced) and what the client
// was told.

// Domains of the table. example.org and nokey.example are ours (nokey's
// certificate is installed without its key); the partners are named for
// the state of their certificate.
const (
	ownDomain     = "example.org"
	keylessDomain = "nokey.example"
	validDomain   = "valid.test"    // a usable certificate
	expiredDomain = "expired.test"  // its only certificate has expired
	requireDomain = "required.test" // require = true, no certificate
	reqOKDomain   = "requiredok.test"
	plainDomain   = "plain.test" // no certificate, no policy
	revokedDomain = "revoked.test"
	trustedDomain = "trusted.test" // issued by the test CA, not revoked
)

// decisionKeys are made once for the package: P-256 keys, so that making
// them takes milliseconds; the table is about decisions, not key types.
var decisionKeys = sync.OnceValues(func() (map[string]*certstore.Generated, error) {
	now := time.Now()
	out := map[string]*certstore.Generated{}
	for _, d := range []struct {
		domain string
		issued time.Time
		days   int
	}{
		{ownDomain, now.Add(-time.Hour), 365},
		{keylessDomain, now.Add(-time.Hour), 365},
		{validDomain, now.Add(-time.Hour), 365},
		{reqOKDomain, now.Add(-time.Hour), 365},
		{expiredDomain, now.Add(-40 * 24 * time.Hour), 30},
	} {
		g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{d.domain}, KeyType: "p256", Days: d.days, Now: func() time.Time { return d.issued }})
		if err != nil {
			return nil, err
		}
		out[d.domain] = g
	}
	return out, nil
})

// table is one gateway over a fresh spool, the fake courier, and the keys
// to check what left.
type table struct {
	t     *testing.T
	dir   string
	cfg   *config.Config
	sp    *spool.Spool
	g     *Gateway
	fc    *fakeCourier
	keys  map[string]cms.KeyPair // every domain's key pair, ours and the partners'
	certs map[string]*x509.Certificate
}

// tableOptions are what a row changes in the gateway.
type tableOptions struct {
	relayFirst bool
	script     map[string]outcome
	extra      string // TOML appended to the configuration
	// pki: the partners are revoked.test and trusted.test, issued by a
	// test CA (openssl) that is the trust anchor; revoked.test's
	// certificate is revoked in its CRL.
	pki bool
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTable(t *testing.T, o tableOptions) *table {
	t.Helper()
	gen, err := decisionKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	own, part, anchors := filepath.Join(dir, "own"), filepath.Join(dir, "partners"), filepath.Join(dir, "anchors")
	for _, d := range []string{own, part, anchors} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tb := &table{t: t, dir: dir, keys: map[string]cms.KeyPair{}, certs: map[string]*x509.Certificate{}}
	for d, g := range gen {
		tb.keys[d] = cms.KeyPair{Cert: g.Cert, Key: g.Key}
		tb.certs[d] = g.Cert
	}
	writeFile(t, filepath.Join(own, ownDomain+".crt"), gen[ownDomain].CertPEM)
	writeFile(t, filepath.Join(own, ownDomain+".key"), gen[ownDomain].KeyPEM)
	// Our second domain's key is missing: mail encrypted to it waits.
	writeFile(t, filepath.Join(own, keylessDomain+".crt"), gen[keylessDomain].CertPEM)

	storeOpts := certstore.Options{OwnDir: own, PartnersDir: part, Logger: slog.New(slog.DiscardHandler)}
	var rev *certstore.Revocation
	if o.pki {
		ca := pkitest.New(t, "Decision Table Test CA")
		for _, d := range []string{revokedDomain, trustedDomain} {
			crt, key := ca.Issue(d)
			data, err := os.ReadFile(crt)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(part, d+".crt"), data)
			tb.certs[d] = pkitest.ReadCert(t, crt)
			tb.keys[d] = cms.KeyPair{Cert: tb.certs[d], Key: readKey(t, key)}
			if d == revokedDomain {
				ca.Revoke(crt)
			}
		}
		data, err := os.ReadFile(ca.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(anchors, "ca.crt"), data)
		rev = certstore.NewRevocation(certstore.RevocationOptions{Mode: certstore.RevocationStrict})
		storeOpts.TrustDir, storeOpts.Revocation = anchors, rev
	} else {
		for _, d := range []string{validDomain, reqOKDomain, expiredDomain} {
			writeFile(t, filepath.Join(part, d+".crt"), gen[d].CertPEM)
		}
	}
	store, err := certstore.Load(storeOpts)
	if err != nil {
		t.Fatal(err)
	}
	if rev != nil {
		// The CRL is fetched now, from the CA's loopback server.
		rev.CheckNow(context.Background())
	}

	toml := fmt.Sprintf(`hostname = "gw.example.org"
state_dir = %q
local_domains = [%q, %q]

[relay]
outbound = "mx"
inbound = "127.0.0.1:2526"
tls = "none"

[certs]
own = %q
partners = %q

[queue]
relay_first = %t

[policy.partners.%q]
require = true

[policy.partners.%q]
require = true
%s`, filepath.Join(dir, "state"), ownDomain, keylessDomain, own, part, o.relayFirst, requireDomain, reqOKDomain, o.extra)
	cfg, err := config.Parse(filepath.Join(dir, "smimegate.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	tb.cfg = cfg
	tb.sp, err = spool.Open(cfg.StateDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.sp.Close() })
	tb.fc = newFakeCourier(o.script)
	tb.g = New(cfg, store, tb.sp, Options{Logger: slog.New(slog.DiscardHandler), Courier: tb.fc})
	return tb
}

// readKey reads a PEM private key the test CA made.
func readKey(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// submission is a message as the receiver hands it to the gateway.
type submission struct {
	trusted bool
	from    string
	to      []string
	data    []byte
}

// received is what happened to one submission.
type received struct {
	id   string
	told string // the reply to DATA: "250", or the code, enhanced code and text of a refusal
	// atReply are the transactions asked for before the reply: what was
	// relayed first.
	atReply int
}

// submit runs the receiver's side: Check, then Handoff, with the message
// in memory as smtpd receives one; then the one queue pass that a worker
// would make for a message due now.
func (tb *table) submit(s submission) received {
	tb.t.Helper()
	in := tb.sp.NewMessageInMemory(int(tb.cfg.Queue.RelayFirstMaxBytes))
	if _, err := in.Write(s.data); err != nil {
		tb.t.Fatal(err)
	}
	env := &spool.Envelope{ID: in.ID, Sender: s.from, Client: "192.0.2.1:4711", Helo: "client.test", Trusted: s.trusted,
		Arrival: time.Now().UTC(), Size: in.Size(), Stage: spool.StageReceived}
	for _, r := range s.to {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	r := received{id: in.ID}
	err := tb.g.Check(env)
	if err == nil {
		err = tb.g.Handoff(env, in)
	}
	in.Abort() // what smtpd does after its reply: a no-op once committed
	r.told, r.atReply = replyOf(err), len(tb.fc.sent())
	if _, lerr := tb.sp.Load(r.id); lerr == nil {
		tb.g.work(context.Background(), r.id, false)
	}
	return r
}

// replyOf is the reply the receiver writes for Check's and Handoff's
// error: a refusal as it is, anything else as smtpd's 451 for a storage
// failure, nil as 250.
func replyOf(err error) string {
	var serr *smtp.Error
	switch {
	case err == nil:
		return "250"
	case errors.As(err, &serr):
		return fmt.Sprintf("%d %s %s", serr.Code, serr.Enhanced, serr.Message)
	}
	return "451 (" + err.Error() + ")"
}

// stayedState is what stayed of a submission: the recipients of the message
// still queued, by state ("pending", "held", "waiting": the policy step
// is to be retried, "delivered", "bounced"), whether it is quarantined,
// and the recipients that delivery status notifications in the queue
// report on.
type stayedState struct {
	queued      map[string]string
	lastError   map[string]string
	quarantined string // the reason, "" when not quarantined
	bounced     []string
}

func (tb *table) stayed(id string) stayedState {
	tb.t.Helper()
	var st stayedState
	env, err := tb.sp.Load(id)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, spool.ErrNotFound):
	case err != nil:
		tb.t.Fatal(err)
	case !env.QuarantinedAt.IsZero():
	default:
		st.queued, st.lastError = map[string]string{}, map[string]string{}
		if env.Stage == spool.StageReceived {
			for _, r := range env.Recipients {
				st.queued[r.Addr] = "waiting"
				st.lastError[r.Addr] = env.LastError
			}
		}
		for _, v := range env.Versions {
			for _, d := range v.Recipients {
				s := string(d.State)
				if v.Action == "hold" && d.State == spool.Pending {
					s = "held"
				}
				st.queued[d.Addr] = s
				st.lastError[d.Addr] = d.LastError
			}
		}
	}
	q, err := tb.sp.ListQuarantine()
	if err != nil {
		tb.t.Fatal(err)
	}
	for _, e := range q {
		if e.ID == id {
			st.quarantined = e.Reason
			if st.quarantined == "" {
				st.quarantined = "(quarantined)"
			}
		}
	}
	all, err := tb.sp.List()
	if err != nil {
		tb.t.Fatal(err)
	}
	for _, e := range all {
		if e.Sender != "" || e.ID == id {
			continue
		}
		data, err := tb.sp.ReadData(e.ID, "")
		if err != nil {
			tb.t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(data), "\r\n") {
			if a, ok := strings.CutPrefix(line, "Final-Recipient: rfc822; "); ok {
				st.bounced = append(st.bounced, a)
			}
		}
	}
	sort.Strings(st.bounced)
	return st
}

// how a transaction's content is checked.
type how int

const (
	// plain: the bytes the client sent, unchanged.
	plain how = iota
	// sealedFor: encrypted to the named domain's certificate, which opens
	// it back to the original content; no other certificate of the table
	// opens it.
	sealedFor
	// opened: decrypted by us: our trace field, no ciphertext, the
	// original content.
	opened
	// signedSealedFor: sealedFor, and what the key opens is signed
	// (RFC 8551 section 3.7: signed, then encrypted).
	signedSealedFor
)

// left is one transaction that a row expects: to whom, how.
type left struct {
	to     []string
	how    how
	domain string // for sealedFor
}

func (l left) String() string {
	switch l.how {
	case sealedFor:
		return fmt.Sprintf("%v sealed for %s", l.to, l.domain)
	case signedSealedFor:
		return fmt.Sprintf("%v signed and sealed for %s", l.to, l.domain)
	case opened:
		return fmt.Sprintf("%v opened", l.to)
	}
	return fmt.Sprintf("%v plain", l.to)
}

// checkLeft compares what the fake courier was asked to send with want.
func (tb *table) checkLeft(original, content []byte, want []left) {
	tb.t.Helper()
	got := tb.fc.sent()
	if len(got) != len(want) {
		var desc []string
		for _, o := range got {
			desc = append(desc, fmt.Sprintf("%v via %s (%d bytes)", o.rcpts, o.route.NextHop, len(o.data)))
		}
		tb.t.Fatalf("sent %d transaction(s) %v, want %d %v", len(got), desc, len(want), want)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(o offer) bool { return slices.Equal(o.rcpts, w.to) })
		if i < 0 {
			tb.t.Errorf("nothing sent to %v", w.to)
			continue
		}
		o := got[i]
		got = slices.Delete(got, i, i+1)
		switch w.how {
		case plain:
			if !bytes.Equal(o.data, original) {
				tb.t.Errorf("%v: not the client's bytes:\n%s", w.to, o.data)
			}
		case sealedFor, signedSealedFor:
			if bytes.Contains(o.data, content) {
				tb.t.Errorf("%v: the content is in the clear", w.to)
			}
			for d, kp := range tb.keys {
				if kp.Key == nil {
					continue
				}
				res := smime.Open(o.data, []cms.KeyPair{kp}, smime.OpenOptions{MaxSize: 1 << 20})
				switch {
				case d == w.domain && res.Outcome != smime.Opened:
					tb.t.Errorf("%v: %s's key does not open it: %v %v", w.to, d, res.Outcome, res.Err)
				case d == w.domain && !bytes.Contains(res.Message, content):
					tb.t.Errorf("%v: opened, but not the original content:\n%s", w.to, res.Message)
				case d == w.domain && w.how == signedSealedFor && !bytes.Contains(res.Message, []byte("multipart/signed")) && !bytes.Contains(res.Message, []byte("signed-data")):
					tb.t.Errorf("%v: opened, but not signed:\n%.400s", w.to, res.Message)
				case d == w.domain && w.how == sealedFor && (bytes.Contains(res.Message, []byte("multipart/signed")) || bytes.Contains(res.Message, []byte("signed-data"))):
					tb.t.Errorf("%v: signed, though the partner does not want our signature", w.to)
				case d != w.domain && res.Outcome == smime.Opened:
					tb.t.Errorf("%v: %s's key opens it too", w.to, d)
				}
			}
		case opened:
			if bytes.Contains(o.data, []byte("application/pkcs7-mime")) || !bytes.Contains(o.data, content) {
				tb.t.Errorf("%v: not the decrypted message:\n%s", w.to, o.data)
			}
			if !bytes.HasPrefix(o.data, []byte("Received: by gw.example.org (smimegate, decrypted)")) {
				tb.t.Errorf("%v: our trace field does not come first:\n%.200s", w.to, o.data)
			}
		}
	}
}

// content is the body every row's message carries, to find it again
// inside whatever left.
const content = "The quarterly figures are attached; do not forward.\r\n"

// message is a plain message from from to the first of to, as the
// receiver stores it (its Received field first).
func message(from string, to ...string) []byte {
	return []byte("Received: from client.test (client.test [192.0.2.1])\r\n\tby gw.example.org with ESMTP id 1; Tue, 1 Dec 2026 10:00:00 +0000\r\n" +
		"From: <" + from + ">\r\nTo: <" + strings.Join(to, ">, <") + ">\r\nSubject: figures\r\nMessage-ID: <1@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + content)
}

// encryptedTo seals msg to domain's certificate with AES-256-GCM, as a
// partner gateway would, below the same Received field.
func (tb *table) encryptedTo(msg []byte, domain string) []byte {
	tb.t.Helper()
	return tb.encryptedWith(msg, domain, cms.AES256GCM)
}

// encryptedWith is encryptedTo with the content cipher c.
func (tb *table) encryptedWith(msg []byte, domain string, c cms.ContentCipher) []byte {
	tb.t.Helper()
	trace, _ := traceAndRest(msg)
	opts := smime.SealOptions{Recipients: []cms.Recipient{{Cert: tb.certs[domain]}}, Cipher: c}
	buf := make([]byte, len(msg), smime.SealCapacity(msg, opts))
	copy(buf, msg)
	var out bytes.Buffer
	out.Write(trace)
	if err := smime.Seal(&out, buf, opts); err != nil {
		tb.t.Fatal(err)
	}
	return out.Bytes()
}

// garbled is a message that says it is encrypted and cannot be parsed.
func garbled() []byte {
	return []byte("Received: from client.test by gw.example.org; Tue, 1 Dec 2026 10:00:00 +0000\r\nFrom: <mallory@plain.test>\r\nTo: <bob@example.org>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxgg==\r\n")
}

// decisionRow is one row of the table.
type decisionRow struct {
	name string
	opts tableOptions
	sub  func(tb *table) submission

	told    string            // prefix of the reply to DATA
	relayed bool              // the transactions happened before the reply
	left    []left            // what was sent (every attempt, delivered or not)
	queued  map[string]string // what stayed in the queue, by recipient
	// lastError: substrings of a queued recipient's last error.
	lastError   map[string]string
	quarantined string   // substring of the quarantine reason; "" for none
	bounced     []string // recipients reported in a DSN in the queue
}

func runDecisionRows(t *testing.T, rows []decisionRow) {
	t.Helper()
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(t, r.opts)
			s := r.sub(tb)
			got := tb.submit(s)
			if !strings.HasPrefix(got.told, r.told) {
				t.Errorf("told %q, want %q", got.told, r.told)
			}
			if r.relayed && got.atReply != len(r.left) {
				t.Errorf("%d transaction(s) before the reply, want all %d relayed first", got.atReply, len(r.left))
			}
			if !r.relayed && got.atReply != 0 {
				t.Errorf("%d transaction(s) before the reply, want none", got.atReply)
			}
			tb.checkLeft(s.data, []byte(content), r.left)
			// A relay-first attempt is bounded, so that a next hop cannot
			// hold the client: the content must start within
			// relay_first_timeout and the whole attempt end within twice
			// that. An attempt from the queue has no such bound.
			for i, o := range tb.fc.sent() {
				span, timeout := o.finishBy.Sub(o.startBy), tb.cfg.Queue.RelayFirstTimeout.D()
				switch {
				case i < got.atReply && (o.startBy.IsZero() || span != timeout):
					t.Errorf("relay-first attempt %d: start by %v, finish by %v; want both, %s apart", i, o.startBy, o.finishBy, timeout)
				case i >= got.atReply && !(o.startBy.IsZero() && o.finishBy.IsZero()):
					t.Errorf("attempt %d from the queue has relay-first bounds %v, %v", i, o.startBy, o.finishBy)
				}
			}
			st := tb.stayed(got.id)
			if fmt.Sprint(st.queued) != fmt.Sprint(r.queued) && !(len(st.queued) == 0 && len(r.queued) == 0) {
				t.Errorf("queued %v, want %v (last errors %v)", st.queued, r.queued, st.lastError)
			}
			for rc, want := range r.lastError {
				if !strings.Contains(st.lastError[rc], want) {
					t.Errorf("%s: last error %q, want it to say %q", rc, st.lastError[rc], want)
				}
			}
			switch {
			case r.quarantined == "" && st.quarantined != "":
				t.Errorf("quarantined: %s", st.quarantined)
			case r.quarantined != "" && !strings.Contains(st.quarantined, r.quarantined):
				t.Errorf("quarantine reason %q, want it to say %q", st.quarantined, r.quarantined)
			}
			if !slices.Equal(st.bounced, r.bounced) {
				t.Errorf("bounces report %v, want %v", st.bounced, r.bounced)
			}
		})
	}
}

func from(trusted bool, sender string, to ...string) func(tb *table) submission {
	return func(tb *table) submission {
		return submission{trusted: trusted, from: sender, to: to, data: message(sender, to...)}
	}
}

func sealedTo(trusted bool, sender, domain string, to ...string) func(tb *table) submission {
	return func(tb *table) submission {
		return submission{trusted: trusted, from: sender, to: to, data: tb.encryptedTo(message(sender, to...), domain)}
	}
}

// TestDecisionTable: classification (outbound, inbound, local; trusted or
// not) × certificate state × the relay-first outcome.
func TestDecisionTable(t *testing.T) {
	t.Parallel()
	rf := tableOptions{relayFirst: true}
	queue := tableOptions{}
	withScript := func(o tableOptions, s map[string]outcome) tableOptions { o.script = s; return o }
	const alice, bob = "alice@example.org", "bob@valid.test"
	runDecisionRows(t, []decisionRow{
		// Outbound, by certificate state.
		{name: "outbound/valid_cert/sealed_and_handed_on", opts: rf, sub: from(true, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}},
		{name: "outbound/no_cert/passed_byte_for_byte", opts: rf, sub: from(true, alice, "carol@plain.test"),
			told: "250", relayed: true, left: []left{{to: []string{"carol@plain.test"}, how: plain}}},
		{name: "outbound/expired_cert/held", opts: rf, sub: from(true, alice, "x@expired.test"),
			told: "250", queued: map[string]string{"x@expired.test": "held"}, lastError: map[string]string{"x@expired.test": "no usable certificate"}},
		{name: "outbound/require_no_cert/held", opts: rf, sub: from(true, alice, "x@required.test"),
			told: "250", queued: map[string]string{"x@required.test": "held"}, lastError: map[string]string{"x@required.test": "requires encryption"}},
		{name: "outbound/require_with_cert/sealed", opts: rf, sub: from(true, alice, "x@requiredok.test"),
			told: "250", relayed: true, left: []left{{to: []string{"x@requiredok.test"}, how: sealedFor, domain: reqOKDomain}}},
		{name: "outbound/valid_cert_sign/signed_then_sealed", opts: tableOptions{relayFirst: true, extra: "\n[policy.partners.\"valid.test\"]\nsign = true\n"},
			sub: from(true, alice, bob), told: "250", relayed: true, left: []left{{to: []string{bob}, how: signedSealedFor, domain: validDomain}}},
		{name: "outbound/queued_first/sealed_from_the_queue", opts: queue, sub: from(true, alice, bob),
			told: "250", left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}},
		{name: "outbound/split/sealed_and_plain", opts: rf, sub: from(true, alice, bob, "carol@plain.test"),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}, {to: []string{"carol@plain.test"}, how: plain}}},
		{name: "outbound/mixed_reject/refused_at_data", opts: tableOptions{relayFirst: true, extra: "\n[policy]\nmixed_recipients = \"reject\"\n"}, sub: from(true, alice, bob, "carol@plain.test"),
			told: "550 5.7.1"},

		// Untrusted clients: a local sender is only a claim. Foreign
		// recipients are still sealed whenever a certificate exists.
		{name: "untrusted_claims_local/valid_cert/sealed", opts: rf, sub: from(false, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}},
		{name: "untrusted_claims_local/expired_cert/held", opts: rf, sub: from(false, alice, "x@expired.test"),
			told: "250", queued: map[string]string{"x@expired.test": "held"}},

		// Mail to local domains, by what it is.
		{name: "inbound/plain/passed_byte_for_byte", opts: rf, sub: from(false, "mallory@plain.test", "bob@example.org"),
			told: "250", relayed: true, left: []left{{to: []string{"bob@example.org"}, how: plain}}},
		{name: "inbound/encrypted_to_us/committed_then_opened", opts: rf, sub: sealedTo(false, "partner@valid.test", ownDomain, "bob@example.org"),
			told: "250", left: []left{{to: []string{"bob@example.org"}, how: opened}}},
		{name: "inbound/encrypted_to_us_from_a_trusted_local_sender/opened", opts: rf, sub: sealedTo(true, alice, ownDomain, "bob@example.org"),
			told: "250", left: []left{{to: []string{"bob@example.org"}, how: opened}}},
		{name: "inbound/encrypted_not_for_us/passed_byte_for_byte", opts: rf, sub: sealedTo(false, "partner@plain.test", validDomain, "bob@example.org"),
			told: "250", relayed: true, left: []left{{to: []string{"bob@example.org"}, how: plain}}},
		{name: "inbound/own_key_missing/waits_in_the_queue", opts: rf, sub: sealedTo(false, "partner@valid.test", keylessDomain, "bob@nokey.example"),
			told: "250", queued: map[string]string{"bob@nokey.example": "waiting"}, lastError: map[string]string{"bob@nokey.example": "private key is not loaded"}},
		{name: "inbound/undecryptable/quarantined", opts: rf, sub: func(tb *table) submission {
			return submission{from: "mallory@plain.test", to: []string{"bob@example.org"}, data: garbled()}
		}, told: "250", quarantined: "cannot decrypt"},
		{name: "inbound/decrypted_refused_untrusted/quarantined_without_report", opts: withScript(rf, map[string]outcome{"bob@example.org": failed5xx}),
			sub:  sealedTo(false, "partner@valid.test", ownDomain, "bob@example.org"),
			told: "250", left: []left{{to: []string{"bob@example.org"}, how: opened}}, quarantined: "no report to the untrusted sender"},
		{name: "inbound/decrypted_refused_trusted/bounced", opts: withScript(rf, map[string]outcome{"bob@example.org": failed5xx}),
			sub:  sealedTo(true, alice, ownDomain, "bob@example.org"),
			told: "250", left: []left{{to: []string{"bob@example.org"}, how: opened}}, queued: nil, bounced: []string{"bob@example.org"}},
		{name: "inbound/encrypted_cbc_under_require_aead/quarantined", opts: tableOptions{relayFirst: true, extra: "\n[policy]\nrequire_aead = true\n"},
			sub: func(tb *table) submission {
				m := message("partner@valid.test", "bob@example.org")
				return submission{from: "partner@valid.test", to: []string{"bob@example.org"}, data: tb.encryptedWith(m, ownDomain, cms.AES256CBC)}
			}, told: "250", quarantined: "require_aead"},
		{name: "inbound/encrypted_gcm_under_require_aead/opened", opts: tableOptions{relayFirst: true, extra: "\n[policy]\nrequire_aead = true\n"},
			sub: sealedTo(false, "partner@valid.test", ownDomain, "bob@example.org"), told: "250", left: []left{{to: []string{"bob@example.org"}, how: opened}}},
		{name: "inbound/unsigned_from_partner_requiring_signature/quarantined", opts: tableOptions{relayFirst: true, extra: "\n[policy.partners.\"valid.test\"]\nrequire_signature = true\n"},
			sub: from(false, "partner@valid.test", "bob@example.org"), told: "250", quarantined: "require_signature"},
		{name: "inbound/unsigned_claiming_partner_requiring_signature_encrypted/quarantined", opts: tableOptions{relayFirst: true, extra: "\n[policy.partners.\"valid.test\"]\nrequire_signature = true\n"},
			sub: sealedTo(false, "partner@valid.test", ownDomain, "bob@example.org"), told: "250", quarantined: "require_signature"},
		{name: "local/trusted/passed_byte_for_byte", opts: rf, sub: from(true, alice, "bob@example.org"),
			told: "250", relayed: true, left: []left{{to: []string{"bob@example.org"}, how: plain}}},

		// Relay-first outcomes.
		{name: "relay_first/refused/told_the_client_no_bounce", opts: withScript(rf, map[string]outcome{bob: failed5xx}), sub: from(true, alice, bob),
			told: "550 5.1.1 Refused by mx.fake.test for bob@valid.test", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}},
		{name: "relay_first/deferred/queued", opts: withScript(rf, map[string]outcome{bob: deferred4xx}), sub: from(true, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}},
			queued: map[string]string{bob: "pending"}, lastError: map[string]string{bob: "451 4.3.0"}},
		{name: "relay_first/connection_lost/queued", opts: withScript(rf, map[string]outcome{bob: connLost}), sub: from(true, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}},
			queued: map[string]string{bob: "pending"}, lastError: map[string]string{bob: "connection lost"}},
		{name: "relay_first/timed_out_before_content/queued", opts: withScript(rf, map[string]outcome{bob: timedOut}), sub: from(true, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}},
			queued: map[string]string{bob: "pending"}, lastError: map[string]string{bob: "relay_first_timeout"}},
		{name: "relay_first/timed_out_after_content/queued_as_possible_duplicate", opts: withScript(rf, map[string]outcome{bob: maybeDup}), sub: from(true, alice, bob),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}},
			queued: map[string]string{bob: "pending"}, lastError: map[string]string{bob: "possible duplicate"}},
		{name: "relay_first/one_refused_one_delivered/bounce_for_one", opts: withScript(rf, map[string]outcome{"carol@plain.test": failed5xx}), sub: from(true, alice, bob, "carol@plain.test"),
			told: "250", relayed: true, left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}, {to: []string{"carol@plain.test"}, how: plain}},
			bounced: []string{"carol@plain.test"}},
		{name: "queued_first/refused/bounced", opts: withScript(queue, map[string]outcome{bob: failed5xx}), sub: from(true, alice, bob),
			told: "250", left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}, bounced: []string{bob}},
		{name: "queued_first/deferred/queued", opts: withScript(queue, map[string]outcome{bob: deferred4xx}), sub: from(true, alice, bob),
			told: "250", left: []left{{to: []string{bob}, how: sealedFor, domain: validDomain}}, queued: map[string]string{bob: "pending"}},
	})
}

// TestDecisionTableRevocation: a partner whose only certificate its CA
// revoked (in the CRL of a real openssl CA) is held, never sent in the
// clear; its neighbour from the same CA is sealed.
func TestDecisionTableRevocation(t *testing.T) {
	pkitest.Need(t)
	t.Parallel()
	pki := tableOptions{relayFirst: true, pki: true}
	runDecisionRows(t, []decisionRow{
		{name: "outbound/revoked_cert/held", opts: pki, sub: from(true, "alice@example.org", "x@revoked.test"),
			told: "250", queued: map[string]string{"x@revoked.test": "held"}, lastError: map[string]string{"x@revoked.test": "no usable certificate"}},
		{name: "outbound/ca_issued_cert/sealed", opts: pki, sub: from(true, "alice@example.org", "x@trusted.test"),
			told: "250", relayed: true, left: []left{{to: []string{"x@trusted.test"}, how: sealedFor, domain: trustedDomain}}},
	})
}
