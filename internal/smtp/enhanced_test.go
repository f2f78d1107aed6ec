package smtp

import (
	"strconv"
	"strings"
	"testing"
)

// parseEnhancedReference is ParseEnhancedCode as first written, by
// splitting: the digit-by-digit version, which does not allocate, must
// agree with it on every input.
func parseEnhancedReference(s string) (EnhancedCode, bool) {
	var c EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 {
		return EnhancedCode{}, false
	}
	for i, p := range parts {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return EnhancedCode{}, false
		}
		n, _ := strconv.Atoi(p)
		c[i] = n
	}
	if !c.Valid() {
		return EnhancedCode{}, false
	}
	return c, true
}

func FuzzParseEnhancedCodeAgainstReference(f *testing.F) {
	for _, s := range []string{"5.1.1", "2.0.0", "4.999.999", ".1.1", "5.1.", "5.01.1", "5..1", "55.1.1", "5.1.1.1", "5.1000.1", "3.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseEnhancedCode(s)
		rc, rok := parseEnhancedReference(s)
		if c != rc || ok != rok {
			t.Fatalf("ParseEnhancedCode(%q) = %v %v, reference %v %v", s, c, ok, rc, rok)
		}
	})
}

func BenchmarkParseEnhancedCode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseEnhancedCode("5.1.1"); !ok {
			b.Fatal("not parsed")
		}
	}
}
