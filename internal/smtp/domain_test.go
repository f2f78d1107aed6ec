package smtp

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Example.ORG":             "example.org",
		"example.org.":            "example.org",
		"bücher.example":          "xn--bcher-kva.example",
		"XN--BCHER-KVA.example":   "xn--bcher-kva.example",
		"a.b.c.example.org":       "a.b.c.example.org",
		"1.example":               "1.example",
		"":                        "",
		".":                       "",
		"a..b":                    "",
		"a_b.example":             "",
		"xn--ab.example":          "",
		"ab--cd.example":          "",
		"1.2.3.4":                 "",
		"127.1":                   "",
		"host.0x7f":               "",
		"\xff.example":            "",
		strings.Repeat("a.", 128): "",
	} {
		got, err := CanonicalDomain(in)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("CanonicalDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CanonicalDomain("10.0.0.1"); !errors.Is(err, ErrNumericDomain) {
		t.Errorf("an IPv4 address as a domain: %v, want ErrNumericDomain", err)
	}
}

func FuzzCanonicalDomain(f *testing.F) {
	for _, s := range []string{"example.org", "bücher.example", "Bücher.Example.", "xn--bcher-kva.example", "0\xbc0", "1.2.3.4", "a..b", "", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalDomain(s)
		if err != nil {
			return
		}
		if len(c) > MaxDomainLength || !utf8.ValidString(c) || strings.ToLower(c) != c ||
			strings.HasSuffix(c, ".") || strings.HasPrefix(c, ".") || strings.Contains(c, "..") {
			t.Fatalf("%q canonicalised to %q", s, c)
		}
		again, err := CanonicalDomain(c)
		if err != nil || again != c {
			t.Fatalf("%q: canonical %q is not a fixed point (%q, %v)", s, c, again, err)
		}
	})
}
