package smtp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestParsePostmaster: RFC 5321 section 4.1.1.3's "<Postmaster>", in any
// case and with parameters, is the one forward-path without a domain;
// anything that only looks like it is not, and a reverse-path never is.
func TestParsePostmaster(t *testing.T) {
	for _, s := range []string{"<Postmaster>", "<postmaster>", "<POSTMASTER> NOTIFY=NEVER", " <PostMaster>"} {
		p, err := ParsePath(s, false)
		if err != nil || !p.Postmaster || p.Local != "postmaster" || p.Domain != "" || p.CheckSyntax(false) != nil {
			t.Errorf("%q: %+v, %v", s, p, err)
		}
	}
	for _, s := range []string{"<postmasterx>", "<postmaster>x", "<postmaster@>", "<\"postmaster\">", "<@a.example:postmaster>"} {
		if p, err := ParsePath(s, false); err == nil && p.Postmaster {
			t.Errorf("%q taken for <Postmaster>: %+v", s, p)
		}
	}
	if p, err := ParsePath("<postmaster>", true); err == nil || p.Postmaster {
		t.Errorf("reverse-path <postmaster>: %+v, %v", p, err)
	}
}

// FuzzParsePath: the path parser never panics, and an address it accepts
// (and the grammar allows) reads back the same from its own Mailbox().
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"<a@b.example>", "<>", "<@x:a@b>", `<"a b"@c>`, `<"a\"@b"@c>`, "<a%b@c>", "<a@[1.2.3.4]>", "<a@b.> SIZE=1",
		"<a@b> NOTIFY=NEVER ORCPT=rfc822;a+40b", `<"unterminated@b>`, "<ü@b>", "a@b", "<a@b",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, reverse bool) {
		p, err := ParsePath(s, reverse)
		if err != nil {
			return
		}
		_ = p.RoutingTrick()
		if p.Null {
			if !reverse {
				t.Fatalf("%q: null forward-path accepted", s)
			}
			return
		}
		if p.Postmaster {
			if reverse || !strings.EqualFold(strings.TrimSpace(s[:strings.IndexByte(s, '>')+1]), "<postmaster>") {
				t.Fatalf("%q taken for <Postmaster> (reverse %v)", s, reverse)
			}
			return
		}
		if p.CheckSyntax(true) != nil {
			return
		}
		q, err := ParsePath("<"+p.Mailbox()+">", reverse)
		if err != nil {
			t.Fatalf("%q: Mailbox %q does not parse: %v", s, p.Mailbox(), err)
		}
		if q.Local != p.Local || q.Domain != p.Domain || q.Unquote != p.Unquote {
			t.Fatalf("%q: round trip %+v != %+v", s, q, p)
		}
		if !p.Quoted && strings.ContainsAny(p.Local, `"@ `) {
			t.Fatalf("%q: unquoted local part %q passed the grammar", s, p.Local)
		}
	})
}

// FuzzRecipientDomain: the receiver's canonical form of a domain is ASCII,
// lower case, stable (canonicalising it again changes nothing), never an IP
// address in disguise.
func FuzzRecipientDomain(f *testing.F) {
	for _, s := range []string{
		"example.org", "EXAMPLE.ORG.", "bücher.example", "ab--cd.example.net", "xn--zz.example.net", "xn--bcher-kva.example",
		"1.2.3.4", "127.1", "0x7f000001", "0x", "a.0xg", "exa_mple.org", "a..b", "ﬁ.example", "", ".", strings.Repeat("a.", 130),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		a, err := CanonicalDomain(d)
		if err != nil {
			return
		}
		for i := 0; i < len(a); i++ {
			if c := a[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
				t.Fatalf("%q: canonical form %q is not lower-case ASCII", d, a)
			}
		}
		if b, err := CanonicalDomain(a); err != nil || b != a {
			t.Fatalf("%q: canonical form %q canonicalises to %q, %v", d, a, b, err)
		}
		if _, err := netip.ParseAddr(a); err == nil {
			t.Fatalf("%q: canonical form %q is an IP address", d, a)
		}
		if numericName(a) {
			t.Fatalf("%q: canonical form %q has a numeric top-level label", d, a)
		}
	})
}

// benchDomains are recipient domains as clients send them: ASCII in
// either case, a trailing dot, and an internationalised name.
var benchDomains = []string{"example.org", "Mail.Example.COM", "sub.partner.example.", "bücher.example", "xn--bcher-kva.example"}

// BenchmarkRecipientDomain measures what the canonical form every
// recipient now gets (IDNA, RFC 5891) costs per domain, against the
// grammar check that was all a recipient got before, in the same run; the
// x-vs-grammar metric is the ratio.
func BenchmarkRecipientDomain(b *testing.B) {
	per := func(f func(string)) float64 {
		const rounds = 20000
		start := time.Now()
		for range rounds {
			for _, d := range benchDomains {
				f(d)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(rounds*len(benchDomains))
	}
	for b.Loop() {
		ref := per(func(d string) { validDomain(strings.TrimSuffix(d, "."), true) })
		got := per(func(d string) { CanonicalDomain(d) })
		b.ReportMetric(got, "ns/domain")
		b.ReportMetric(ref, "grammar-ns/domain")
		b.ReportMetric(got/ref, "x-vs-grammar")
	}
}
