package smtp

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseEHLO(t *testing.T) {
	lines := []string{"mx.example.net greets you", "pipelining", "Size 10240000", "8BITMIME", "AUTH PLAIN LOGIN",
		"not_a_keyword! x", "-dash", "X-EXPS  GSSAPI ", "PIPELINING"}
	e := ParseEHLO(lines)
	for kw, param := range map[string]string{"PIPELINING": "", "SIZE": "10240000", "8BITMIME": "", "AUTH": "PLAIN LOGIN", "X-EXPS": "GSSAPI"} {
		if !e.Has(kw) || e.Param(kw) != param {
			t.Errorf("%s: has %v, param %q; want %q", kw, e.Has(kw), e.Param(kw), param)
		}
	}
	if e.Len() != 5 || e.Has("NOT_A_KEYWORD!") || e.Has("-DASH") || e.Has("MX.EXAMPLE.NET") {
		t.Errorf("kept %d extensions: %v", e.Len(), e.kw)
	}
	if n, ok := e.Size(); !ok || n != 10240000 {
		t.Errorf("Size() = %d, %v", n, ok)
	}
	kept := ParseEHLO(lines, "SIZE", "STARTTLS")
	if kept.Len() != 1 || !kept.Has("SIZE") || kept.Has("PIPELINING") {
		t.Errorf("with keep: %v", kept.kw)
	}
	if h := ParseEHLO([]string{"just the name"}); h.Len() != 0 || h.Has("SIZE") {
		t.Errorf("a one-line reply has extensions: %v", h.kw)
	}
	var helo Extensions
	if helo.Has("PIPELINING") || helo.Len() != 0 {
		t.Error("the zero Extensions offers something")
	}
}

func TestEHLOSize(t *testing.T) {
	for param, want := range map[string]int64{
		"SIZE":                            0,
		"SIZE 0":                          0,
		"SIZE 52428800":                   52428800,
		"SIZE -1":                         0,
		"SIZE 1e9":                        0,
		"SIZE 99999999999999999999":       0,
		"SIZE 9223372036854775807":        9223372036854775807,
		"SIZE " + strings.Repeat("9", 40): 0,
	} {
		n, ok := ParseEHLO([]string{"mx", param}).Size()
		if !ok || n != want {
			t.Errorf("%q: Size() = %d, %v; want %d", param, n, ok, want)
		}
	}
	if _, ok := ParseEHLO([]string{"mx", "PIPELINING"}).Size(); ok {
		t.Error("SIZE reported without the keyword")
	}
}

// A server cannot make the client keep more than MaxExtensions keywords.
func TestEHLOBound(t *testing.T) {
	lines := []string{"mx"}
	for i := range MaxReplyLines {
		lines = append(lines, fmt.Sprintf("X-PAD%d", i))
	}
	if e := ParseEHLO(lines); e.Len() != MaxExtensions {
		t.Errorf("kept %d of %d extensions, want %d", e.Len(), len(lines)-1, MaxExtensions)
	}
}

func FuzzParseEHLO(f *testing.F) {
	f.Add("mx\nPIPELINING\nSIZE 100\nsmtputf8")
	f.Add("mx\n\n \n-\nSIZE  1")
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		if len(lines) > MaxReplyLines {
			lines = lines[:MaxReplyLines]
		}
		e := ParseEHLO(lines)
		if e.Len() > MaxExtensions {
			t.Fatalf("%d extensions", e.Len())
		}
		for kw := range e.kw {
			if !isKeyword(kw) || strings.ToUpper(kw) != kw {
				t.Fatalf("keyword %q kept", kw)
			}
		}
		if n, ok := e.Size(); n < 0 || (!ok && e.Has("SIZE")) {
			t.Fatalf("Size() = %d, %v", n, ok)
		}
	})
}
