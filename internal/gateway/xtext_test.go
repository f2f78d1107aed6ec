package gateway

import (
	"strings"
	"testing"
)

func TestDecodeORcpt(t *testing.T) {
	for in, want := range map[string]string{
		"rfc822;bob@example.net":           "rfc822;bob@example.net",
		"rfc822;one+40partner.example":     "rfc822;one@partner.example",
		"rfc822;a+2Bb@example.net":         "rfc822;a+b@example.net",
		"utf-8;j\\x{F6}rg@example.net":     "utf-8;jörg@example.net",
		"rfc822;broken+4":                  "rfc822;broken+4",
		"rfc822;bad+ZZescape@x":            "rfc822;bad+ZZescape@x",
		"utf-8;bad\\x{110000}@example.net": "utf-8;bad\\x{110000}@example.net",
		"":                                 "",
	} {
		if got := decodeORcpt(in); got != want {
			t.Errorf("decodeORcpt(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecodeORcpt(f *testing.F) {
	f.Add("rfc822;one+40partner.example")
	f.Add("utf-8;j\\x{F6}rg@example.net")
	f.Add("+")
	f.Fuzz(func(t *testing.T, s string) {
		out := decodeORcpt(s)
		if !strings.ContainsAny(s, "+\\") && out != s {
			t.Errorf("decodeORcpt(%q) changed a string without escapes: %q", s, out)
		}
	})
}
