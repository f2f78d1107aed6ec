package smtp

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorRendering(t *testing.T) {
	for _, tc := range []struct {
		e           Error
		text, lines string
	}{
		{Error{250, EnhancedCode{2, 0, 0}, "OK queued as abc"}, "250 2.0.0 OK queued as abc", "250 2.0.0 OK queued as abc\r\n"},
		{Error{550, EnhancedCode{5, 1, 1}, "No such user"}, "550 5.1.1 No such user", "550 5.1.1 No such user\r\n"},
		// No enhanced code: none is invented on the wire.
		{Error{421, EnhancedCode{}, "Bye"}, "421 Bye", "421 Bye\r\n"},
		// An enhanced code of the wrong class is dropped (RFC 3463 section 2).
		{Error{550, EnhancedCode{4, 1, 1}, "x"}, "550 x", "550 x\r\n"},
		{Error{250, EnhancedCode{2, 0, 0}, "a\nb"}, "250 2.0.0 a; b", "250-2.0.0 a\r\n250 2.0.0 b\r\n"},
		// Nothing in the text can end the line early.
		{Error{550, EnhancedCode{5, 7, 1}, "evil\r250 ok"}, "550 5.7.1 evil\r250 ok", "550 5.7.1 evil?250 ok\r\n"},
		// A code outside RFC 5321's range becomes a temporary failure.
		{Error{999, EnhancedCode{}, "x"}, "999 x", "451 x\r\n"},
	} {
		if got := tc.e.Error(); got != tc.text {
			t.Errorf("%#v: Error() = %q, want %q", tc.e, got, tc.text)
		}
		if got := string(tc.e.Lines()); got != tc.lines {
			t.Errorf("%#v: Lines() = %q, want %q", tc.e, got, tc.lines)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		code            int
		temp, perm, pos bool
		status          string
	}{
		{250, false, false, true, "2.0.0"},
		{421, true, false, false, "4.0.0"},
		{452, true, false, false, "4.0.0"},
		{554, false, true, false, "5.0.0"},
		{354, false, false, false, "4.0.0"},
	} {
		e := &Error{Code: tc.code}
		if e.Temporary() != tc.temp || e.Permanent() != tc.perm || e.Positive() != tc.pos {
			t.Errorf("%d: Temporary %v Permanent %v Positive %v", tc.code, e.Temporary(), e.Permanent(), e.Positive())
		}
		if got := e.Status().String(); got != tc.status {
			t.Errorf("%d: Status() = %s, want %s", tc.code, got, tc.status)
		}
	}
	if got := (&Error{Code: 550, Enhanced: EnhancedCode{5, 1, 1}}).Status().String(); got != "5.1.1" {
		t.Errorf("Status() = %s, want the reply's own 5.1.1", got)
	}
}

func TestErrorAs(t *testing.T) {
	var err error = fmt.Errorf("delivering: %w", NewError(550, EnhancedCode{5, 1, 1}, "No such user"))
	var e *Error
	if !errors.As(err, &e) || e.Code != 550 || e.Enhanced != (EnhancedCode{5, 1, 1}) {
		t.Fatalf("errors.As lost the reply: %v", err)
	}
}

func TestParseEnhancedCode(t *testing.T) {
	for s, want := range map[string]string{
		"5.1.1": "5.1.1", "2.0.0": "2.0.0", "4.999.999": "4.999.999",
		"3.1.1": "", "5.1": "", "5.1.1.1": "", "55.1.1": "", "5.1000.1": "", "5..1": "", "5.a.1": "", "": "", "5.1.+1": "",
	} {
		c, ok := ParseEnhancedCode(s)
		if ok != (want != "") || c.String() != want {
			t.Errorf("ParseEnhancedCode(%q) = %v %v, want %q", s, c, ok, want)
		}
	}
}

func FuzzParseEnhancedCode(f *testing.F) {
	for _, s := range []string{"5.1.1", "2.0.0", "4.999.999", "x", "5..1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseEnhancedCode(s)
		if !ok {
			return
		}
		if c.String() == "" || !c.Valid() {
			t.Fatalf("%q parsed to %v", s, c)
		}
		again, ok := ParseEnhancedCode(c.String())
		if !ok || again != c {
			t.Fatalf("%q: %v does not round-trip", s, c)
		}
	})
}
