package smtpd

import (
	"os/exec"
	"strings"
	"testing"
)

// oddDomains are recipient domains that pass the LDH grammar of RFC 5321
// (or look as if they might) but have no canonical form: each would reach
// the policy as a string matching no partner and go out unsealed. The
// reply must say why.
var oddDomains = []struct {
	rcpt, reason string
}{
	{"<bob@ab--cd.example.net>", "domain ab--cd.example.net is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@xn--zz.example.net>", "domain xn--zz.example.net is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@xn--a.example.org>", "domain xn--a.example.org is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@exa_mple.example.net>", "domain exa_mple.example.net is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@ab--cd.example.org>", "domain ab--cd.example.org is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@ab-.example.net>", "domain ab-.example.net is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@a..example.net>", "domain a..example.net is not a valid IDNA domain name (RFC 5891)"},
	{"<bob@1.2.3.4>", "domain 1.2.3.4 is not a valid domain name: the top-level label is numeric"},
	{"<bob@127.1>", "domain 127.1 is not a valid domain name: the top-level label is numeric"},
	{"<bob@0x7f000001>", "domain 0x7f000001 is not a valid domain name: the top-level label is numeric"},
	{"<bob@[192.0.2.1]>", "a domain-encryption gateway cannot apply policy to an address literal"},
	{"<bob@[IPv6:2001:db8::1]>", "a domain-encryption gateway cannot apply policy to an address literal"},
}

// TestRecipientDomainMustCanonicalise: a recipient whose domain has no
// canonical form, or is an address literal, is refused with 553 5.1.3 from
// every client, trusted ones included (they were the fail-open: a trusted
// client may relay anywhere, and the policy fell back to the raw string).
// Ordinary and internationalised names pass, and are stored canonical.
func TestRecipientDomainMustCanonicalise(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000", Options{})
	for _, from := range []string{trustedIP, untrustedIP} {
		c := h.session(from)
		c.cmd("MAIL FROM:<a@example.net> SMTPUTF8", 250)
		for _, tc := range oddDomains {
			c.send("RCPT TO:" + tc.rcpt + "\r\n")
			code, msg := c.reply()
			if code != 553 || !strings.HasPrefix(msg, "5.1.3 Recipient address rejected: ") || !strings.Contains(msg, tc.reason) {
				t.Errorf("from %s: RCPT TO:%s got %d %s, want 553 5.1.3 ... %s", from, tc.rcpt, code, msg, tc.reason)
			}
		}
		// Unicode domains, in any case, are fine with SMTPUTF8.
		c.cmd("RCPT TO:<bob@BÜCHER.example.org>", 250)
		c.cmd("RCPT TO:<Bob@Sub.Example.ORG>", 250)
		if from == trustedIP {
			c.cmd("RCPT TO:<bob@bücher.example>", 250)
			c.cmd("RCPT TO:<bob@Partner.Example.>", 250)
		}
		c.cmd("DATA", 354)
		c.send(message("idna-"+from) + ".\r\n")
		c.expect(250)
		c.cmd("QUIT", 221)
	}
	got := map[string][]string{}
	for _, env := range h.queued() {
		ip, _, _ := strings.Cut(env.Client, ":")
		for _, r := range env.Recipients {
			got[ip] = append(got[ip], r.Addr)
		}
	}
	want := map[string]string{
		trustedIP:   "bob@xn--bcher-kva.example.org Bob@sub.example.org bob@xn--bcher-kva.example bob@partner.example",
		untrustedIP: "bob@xn--bcher-kva.example.org Bob@sub.example.org",
	}
	for ip, w := range want {
		if g := strings.Join(got[ip], " "); g != w {
			t.Errorf("from %s: stored recipients %q, want %q (canonical domains, local parts as written)", ip, g, w)
		}
	}
	if !hasAll(h.logs.String(), "smtpd: recipient refused", "ab--cd.example.net", "idna: invalid label") {
		t.Errorf("the refusals and their reasons are not logged:\n%s", h.logs.String())
	}
}

// TestSenderDomainMustCanonicalise: at MAIL, a sender domain without a
// canonical form gets 553 5.1.7; the null sender and address literals are
// foreign senders and pass; an ordinary sender is stored canonical.
func TestSenderDomainMustCanonicalise(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000", Options{})
	for _, from := range []string{trustedIP, untrustedIP} {
		c := h.session(from)
		for _, sender := range []string{"ab--cd.example.net", "xn--zz.example.net", "exa_mple.example.net", "1.2.3.4", "ab--cd.example.org"} {
			msg := c.cmd("MAIL FROM:<a@"+sender+">", 553)
			if !strings.HasPrefix(msg, "5.1.7 Sender address rejected: domain "+sender+" is not a valid") {
				t.Errorf("from %s: MAIL FROM:<a@%s> got %q", from, sender, msg)
			}
		}
		for _, ok := range []string{"<>", "<a@[192.0.2.1]>", "<a@[IPv6:2001:db8::1]>"} {
			c.cmd("MAIL FROM:"+ok, 250)
			c.cmd("RSET", 250)
		}
		c.cmd("MAIL FROM:<A@Bücher.Example.> SMTPUTF8", 250)
		c.cmd("RCPT TO:<b@example.org>", 250)
		c.cmd("DATA", 354)
		c.send(message("sender-"+from) + ".\r\n")
		c.expect(250)
	}
	list := h.queued()
	if len(list) != 2 {
		t.Fatalf("%d queued, want 2", len(list))
	}
	for _, env := range list {
		if env.Sender != "A@xn--bcher-kva.example" {
			t.Errorf("sender stored as %q, want A@xn--bcher-kva.example", env.Sender)
		}
	}
}

// TestSwaksOddDomain: swaks, a real client, from a trusted address: the
// odd recipient is refused with the reason, the transaction fails, nothing
// is queued; the same client with an ordinary name gets its message in.
func TestSwaksOddDomain(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks is not installed")
	}
	h := newHarness(t, "", Options{})
	for _, to := range []string{"bob@ab--cd.example.net", "bob@xn--zz.example.net", "bob@[192.0.2.1]"} {
		out, err := exec.Command("swaks", "--server", h.addr, "--local-interface", trustedIP, "--from", "a@example.org", "--to", to,
			"--header", "Subject: odd").CombinedOutput()
		if err == nil {
			t.Errorf("swaks to %s succeeded:\n%s", to, out)
		}
		if !strings.Contains(string(out), "<** 553 5.1.3 Recipient address rejected: ") {
			t.Errorf("swaks to %s: no 553 5.1.3 in the dialogue:\n%s", to, out)
		}
	}
	if n := len(h.queued()); n != 0 {
		t.Fatalf("%d queued for odd domains", n)
	}
	out, err := exec.Command("swaks", "--server", h.addr, "--local-interface", trustedIP, "--from", "a@example.org", "--to", "bob@Partner.Example",
		"--header", "Subject: ordinary").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks with an ordinary name: %v\n%s", err, out)
	}
	if list := h.queued(); len(list) != 1 || list[0].Recipients[0].Addr != "bob@partner.example" {
		t.Fatalf("queued %+v", list)
	}
}
