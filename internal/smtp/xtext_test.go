package smtp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestXtext(t *testing.T) {
	for in, want := range map[string]string{
		"a+b=c@example.org": "a+2Bb+3Dc@example.org",
		"env id":            "env+20id",
		"\x00\xff":          "+00+FF",
		"":                  "",
	} {
		got := EncodeXtext(in)
		if got != want {
			t.Errorf("EncodeXtext(%q) = %q, want %q", in, got, want)
		}
		if back, err := DecodeXtext(got); err != nil || back != in {
			t.Errorf("DecodeXtext(%q) = %q, %v; want %q", got, back, err, in)
		}
	}
	for _, bad := range []string{"a+4", "a+ZZ", "a b", "a=b", "j\u00fcrgen", "+-1", strings.Repeat("x", MaxXtext+1)} {
		if got, err := DecodeXtext(bad); err == nil {
			t.Errorf("DecodeXtext(%q) = %q, want an error", bad, got)
		}
	}
}

func TestUTF8AddrXtext(t *testing.T) {
	for in, want := range map[string]string{
		"j\u00fcrgen@example.org": `j\x{FC}rgen@example.org`,
		`a+b=c\d`:                 `a\x{2B}b\x{3D}c\x{5C}d`,
		"\U0001F600":              `\x{1F600}`,
	} {
		got := EncodeUTF8AddrXtext(in)
		if got != want {
			t.Errorf("EncodeUTF8AddrXtext(%q) = %q, want %q", in, got, want)
		}
		if back, err := DecodeUTF8AddrXtext(got); err != nil || back != in {
			t.Errorf("DecodeUTF8AddrXtext(%q) = %q, %v; want %q", got, back, err, in)
		}
	}
	// utf-8-addr-unitext: UTF-8 as it is.
	if got, err := DecodeUTF8AddrXtext("j\u00f6rg@example.net"); err != nil || got != "j\u00f6rg@example.net" {
		t.Errorf("unitext: %q, %v", got, err)
	}
	for _, bad := range []string{`\x{110000}`, `\x{D800}`, `\x{}`, `\x{1234567}`, `\x{FC`, `a+b`, `a\b`, "a b", "\xff"} {
		if got, err := DecodeUTF8AddrXtext(bad); err == nil {
			t.Errorf("DecodeUTF8AddrXtext(%q) = %q, want an error", bad, got)
		}
	}
}

func TestDecodeORcpt(t *testing.T) {
	for in, want := range map[string]string{
		"rfc822;bob@example.net":           "rfc822;bob@example.net",
		"rfc822;one+40partner.example":     "rfc822;one@partner.example",
		"rfc822;a+2Bb@example.net":         "rfc822;a+b@example.net",
		"utf-8;j\\x{F6}rg@example.net":     "utf-8;jörg@example.net",
		"UTF-8;jörg@example.net":           "UTF-8;jörg@example.net",
		"rfc822;broken+4":                  "rfc822;broken+4",
		"rfc822;bad+ZZescape@x":            "rfc822;bad+ZZescape@x",
		"utf-8;bad\\x{110000}@example.net": "utf-8;bad\\x{110000}@example.net",
		"no type":                          "no type",
		"":                                 "",
	} {
		if got := DecodeORcpt(in); got != want {
			t.Errorf("DecodeORcpt(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzXtext: what the encoders write, the decoders read back, and the
// encoders write nothing but printable ASCII without the characters that
// would end or split a parameter.
func FuzzXtext(f *testing.F) {
	f.Add("rfc822;one+40partner.example")
	f.Add("utf-8;j\\x{F6}rg@example.net")
	f.Add("+")
	f.Add("\xff\x00=")
	f.Fuzz(func(t *testing.T, s string) {
		_ = DecodeORcpt(s)
		if d, err := DecodeXtext(s); err == nil && len(d) > len(s) {
			t.Fatalf("DecodeXtext(%q) grew to %q", s, d)
		}
		if d, err := DecodeUTF8AddrXtext(s); err == nil && !utf8.ValidString(d) {
			t.Fatalf("DecodeUTF8AddrXtext(%q) = invalid UTF-8 %q", s, d)
		}
		x := EncodeXtext(s)
		if len(s) <= MaxXtext/3 {
			if back, err := DecodeXtext(x); err != nil || back != s {
				t.Fatalf("xtext of %q does not round-trip: %q %v", s, back, err)
			}
		}
		u := EncodeUTF8AddrXtext(s)
		if utf8.ValidString(s) && len(u) <= MaxXtext {
			if back, err := DecodeUTF8AddrXtext(u); err != nil || back != s {
				t.Fatalf("utf-8-addr-xtext of %q does not round-trip: %q %v", s, back, err)
			}
		}
		for _, enc := range []string{x, u} {
			for i := 0; i < len(enc); i++ {
				if enc[i] <= ' ' || enc[i] > '~' || enc[i] == '=' {
					t.Fatalf("encoding of %q has %q", s, enc)
				}
			}
		}
	})
}
