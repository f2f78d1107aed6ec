package gateway

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"smimegate/internal/smime"
)

// TestAuthservID reads the authserv-id of Authentication-Results values as
// RFC 8601 section 2.2 writes them: after comments, quoted, with a version.
func TestAuthservID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"gw.example.net; smime=pass", "gw.example.net", true},
		{"  gw.example.net 1; none", "gw.example.net", true},
		{"(a comment (nested)) gw.example.net; spf=pass", "gw.example.net", true},
		{`"gw.example.net"; dkim=pass`, "gw.example.net", true},
		{`"gw.ex\"ample"; x`, `gw.ex"ample`, true},
		{"(unclosed gw.example.net; smime=pass", "", false},
		{"", "", false},
		{";", "", false},
	} {
		got, ok := authservID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestForgedField: our hostname as authserv-id, in any case or form, and
// our own field prefix, are forged; other hosts' verdicts are not.
func TestForgedField(t *testing.T) {
	t.Parallel()
	forged := forgedField("gw.example.net")
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"Authentication-Results", "gw.example.net; smime=pass", true},
		{"authentication-results", "GW.EXAMPLE.NET.; smime=pass", true},
		{"Authentication-Results", "(x) \"gw.example.net\" 1; smime=pass", true},
		{"Authentication-Results", "(broken gw.example.net", true},
		{"Authentication-Results", "mx.example.net; spf=pass", false},
		{"Authentication-Results", "gw.example.net.evil.test; smime=pass", false},
		{"Smimegate-Decrypted", "anything", true},
		{"SMIMEGATE-Whatever", "anything", true},
		{"ARC-Authentication-Results", "i=1; gw.example.net; smime=pass", false},
		{"Subject", "gw.example.net; smime=pass", false},
	} {
		if got := forged(tc.name, tc.value); got != tc.want {
			t.Errorf("%s: %s: %v, want %v", tc.name, tc.value, got, tc.want)
		}
	}
}

// rfc8601 is the shape of our field, from RFC 8601 section 2.2's ABNF
// narrowed to what we write: authserv-id ";" method=result (comment)
// then ptype.property=pvalue pairs.
var rfc8601 = regexp.MustCompile(`^Authentication-Results: [a-z0-9.-]+;\r\n\tsmime=(pass|fail|neutral|none|permerror) \((?:[ -'*-\[\]-~]|\\[ -~])*\)` +
	`(\r\n\tbody\.smime-[a-z]+=("(?:[ !#-\[\]-~]|\\[ -~])*"|[^ ;"\r\n()]+))*\r\n$`)

// TestAuthResultsField: every verdict renders as RFC 8601 with the RFC 7281
// properties, and a hostile detail (parentheses, a CRLF, non-ASCII) cannot
// break out of its comment or add a field.
func TestAuthResultsField(t *testing.T) {
	t.Parallel()
	signer := &x509.Certificate{SerialNumber: big.NewInt(0xabcdef), Issuer: pkix.Name{CommonName: "CA, \"quoted\" (x)"},
		EmailAddresses: []string{"smg_encryptor@example.org", "domain-signing-authority@example.org"}}
	dec := &decryption{fingerprint: "00ff", cipher: "aes256-gcm", keyTransport: "rsa-pkcs1v15"}
	for _, r := range []smime.DomainResult{
		{Verdict: smime.VerdictPass, Domain: "example.org", Signer: signer},
		{Verdict: smime.VerdictNone, Reason: smime.ReasonUnsigned},
		{Verdict: smime.VerdictFail, Reason: smime.ReasonBadSignature, Detail: "digest (changed)\r\nX-Injected: yes ünïcode \\", Signer: signer},
		{Verdict: smime.VerdictNeutral, Reason: smime.ReasonWrongDomain, Detail: "signed by example.com", Signer: signer},
		{Verdict: smime.VerdictPermError, Reason: smime.ReasonMalformed, Detail: strings.Repeat("x", 5000)},
	} {
		for _, d := range []*decryption{dec, nil} {
			f := authResultsField("gw.example.net", r, d)
			if !rfc8601.MatchString(f) {
				t.Errorf("%s: not RFC 8601:\n%q", r.Verdict, f)
			}
			if strings.Contains(f, "\r\nX-Injected") || len(f) > 1200 {
				t.Errorf("%s: the detail escaped or is unbounded:\n%q", r.Verdict, f)
			}
		}
	}
	f := authResultsField("gw.example.net", smime.DomainResult{Verdict: smime.VerdictPass, Domain: "example.org", Signer: signer, WholeMessage: true}, dec)
	if body := authResultsField("gw.example.net", smime.DomainResult{Verdict: smime.VerdictPass, Domain: "example.org", Signer: signer}, nil); !strings.Contains(body, "over the body only: the header is not signed; arrived unencrypted") {
		t.Errorf("a pass over the body alone does not say so:\n%s", body)
	}
	for _, w := range []string{"smime=pass (domain signature of example.org over the whole message; arrived encrypted to our domain certificate sha256:00ff with aes256-gcm)",
		"body.smime-identifier=domain-signing-authority@example.org", "body.smime-serial=ABCDEF", `body.smime-issuer="CN=CA\\, \\\"quoted\\\" (x)"`} {
		if !strings.Contains(f, w) {
			t.Errorf("lacks %q:\n%s", w, f)
		}
	}
	if got := decryptedFieldText("gw.example.net", dec); got != "Smimegate-Decrypted: gw.example.net; cert-sha256=00ff; cipher=aes256-gcm; key-transport=rsa-pkcs1v15\r\n" {
		t.Errorf("Smimegate-Decrypted: %q", got)
	}
}

// TestSignatureMissing: only a pass by the domain or a parent of it is the
// domain's signature.
func TestSignatureMissing(t *testing.T) {
	t.Parallel()
	pass := smime.DomainResult{Verdict: smime.VerdictPass, Domain: "example.org"}
	for _, tc := range []struct {
		r    smime.DomainResult
		d    string
		want string
	}{
		{pass, "example.org", ""},
		{pass, "sub.example.org", ""},
		{pass, "example.com", smime.ReasonWrongDomain},
		{pass, "badexample.org", smime.ReasonWrongDomain},
		{smime.DomainResult{Verdict: smime.VerdictPass, Domain: "sub.example.org"}, "example.org", smime.ReasonWrongDomain},
		{smime.DomainResult{Verdict: smime.VerdictNone}, "example.org", smime.ReasonUnsigned},
		{smime.DomainResult{Verdict: smime.VerdictFail, Reason: smime.ReasonExpired, Detail: "x"}, "example.org", smime.ReasonExpired},
	} {
		if got := signatureMissing(tc.r, tc.d); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
			t.Errorf("%+v for %s: %q, want %q", tc.r, tc.d, got, tc.want)
		}
	}
}
