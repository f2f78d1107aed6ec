package smtp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxReplyLine)
	many := strings.Repeat("250-x\r\n", MaxReplyLines-1) + "250 x\r\n"
	for _, tc := range []struct {
		in    string
		code  int
		lines int
		err   string // part of the error, "" for none
	}{
		{"250 2.0.0 ok\r\n", 250, 1, ""},
		{"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n", 250, 3, ""},
		{"354\r\n", 354, 1, ""},
		{"220 bare LF is read as a line end\n", 220, 1, ""},
		{many, 250, MaxReplyLines, ""},
		{"250 " + long[:MaxReplyLine-6] + "\r\n", 250, 1, ""},
		{"250 " + long + "\r\n", 0, 0, "longer than 2048 bytes"},
		{many[:len(many)-len("250 x\r\n")] + "250-x\r\n250 x\r\n", 0, 0, "more than 100 lines"},
		{"250-first\r\n550 second\r\n", 0, 0, "codes 250 and 550"},
		{"25O ok\r\n", 0, 0, "not a reply line"},
		{"099 low\r\n", 0, 0, "not a reply line"},
		{"250x\r\n", 0, 0, "not a reply line"},
		{"250-cut short", 0, 0, "unexpected EOF"},
		{"", 0, 0, "unexpected EOF"},
	} {
		r, lines, err := ReadReply(bufio.NewReaderSize(strings.NewReader(tc.in), MaxReplyLine))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.40q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (r.Code != tc.code || len(lines) != tc.lines):
			t.Errorf("%.40q: code %d with %d lines, want %d with %d", tc.in, r.Code, len(lines), tc.code, tc.lines)
		}
	}
	// Lines within their bound, but too many bytes altogether.
	full := "250-" + long[:MaxReplyLine-6] + "\r\n"
	huge := strings.Repeat(full, MaxReplyLines-1) + "250 " + long[:MaxReplyLine-6] + "\r\n"
	if _, _, err := ReadReply(bufio.NewReaderSize(strings.NewReader(huge), MaxReplyLine)); err == nil || !strings.Contains(err.Error(), "reply longer than 131072 bytes") {
		t.Errorf("a reply of %d bytes: %v", len(huge), err)
	}
	// The line bound is the protocol's, whatever the reader's buffer.
	if _, _, err := ReadReply(bufio.NewReaderSize(strings.NewReader("250 "+long+"\r\n"), 4*MaxReplyLine)); err == nil {
		t.Error("a line longer than MaxReplyLine was read from a larger buffer")
	}
}

// FuzzReadReply feeds arbitrary bytes to the reply reader: it returns a
// reply within the bounds or an error, never more.
func FuzzReadReply(f *testing.F) {
	f.Add("250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
	f.Add("220 \xff\x00\x1b[31m\r\n")
	f.Add("250-a\r\n550 b\r\n")
	f.Add("354\r\n250 ok\r\n")
	f.Add(strings.Repeat("250-", 600) + "\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), MaxReplyLine)
		for range 3 {
			r, lines, err := ReadReply(br)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error %T %v", err, err)
				}
				return
			}
			if r.Code < 100 || r.Code > 999 || len(lines) == 0 || len(lines) > MaxReplyLines {
				t.Fatalf("code %d with %d lines", r.Code, len(lines))
			}
			for _, l := range lines {
				if len(l) > MaxReplyLine || strings.ContainsAny(l, "\n") {
					t.Fatalf("line %q", l)
				}
			}
			checkLine(t, r.Message)
			checkLine(t, r.Error())
			if e := ParseEHLO(lines); e.Len() > MaxExtensions {
				t.Fatalf("%d extensions kept", e.Len())
			}
		}
	})
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		code           int
		msg            string
		enhanced, line string
	}{
		{250, "2.0.0 Ok: queued as ABC", "2.0.0", "250 2.0.0 Ok: queued as ABC"},
		{550, "5.1.1 <u@x>: no such user\n5.1.1 see the docs", "5.1.1", "550 5.1.1 <u@x>: no such user see the docs"},
		{550, "4.1.1 wrong class", "", "550 4.1.1 wrong class"},
		{451, "Requested action aborted", "", "451 Requested action aborted"},
		{421, "4.3.2", "4.3.2", "421 4.3.2"},
		{554, "5.7.1\ttab\x00nul\x1besc", "", "554 5.7.1 tab?nul?esc"},
		{550, "5.1234.1 bad detail", "", "550 5.1234.1 bad detail"},
		{250, "", "", "250"},
	} {
		r := ParseReply(tc.code, strings.Split(tc.msg, "\n"))
		if r.Enhanced.String() != tc.enhanced || r.Error() != tc.line {
			t.Errorf("ParseReply(%d, %q) = %q %q, want %q %q", tc.code, tc.msg, r.Enhanced, r.Error(), tc.enhanced, tc.line)
		}
	}
}

// FuzzParseReply feeds arbitrary reply texts to the reply parser: whatever
// a server sends, the result is one clean line and a valid (or no)
// enhanced code of the reply's class.
func FuzzParseReply(f *testing.F) {
	f.Add(250, "2.0.0 Ok: queued as 12345")
	f.Add(550, "5.1.1 <x@y>: no such user\n5.1.1 see http://x")
	f.Add(451, "4.3.0")
	f.Add(421, "")
	f.Add(550, "4.1.1 class does not match")
	f.Add(250, "2.0.0\x00\x1b[31m\xff\xfe")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		r := ParseReply(code, strings.Split(msg, "\n"))
		checkLine(t, r.Message)
		checkLine(t, r.Error())
		if !r.Enhanced.IsZero() && (!r.Enhanced.Valid() || r.Enhanced[0] != code/100) {
			t.Fatalf("enhanced %v for code %d", r.Enhanced, code)
		}
		if st := r.Status(); !st.Valid() {
			t.Fatalf("status %v for code %d", st, code)
		}
	})
}

func checkLine(t *testing.T, s string) {
	t.Helper()
	if strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) || len(s) > MaxReplyText+20 {
		t.Fatalf("unclean line %q", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Fatalf("control character in %q", s)
		}
	}
}

func TestSanitizeText(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":                       "plain text",
		"  lead and  inner\t\tblanks  ":    "lead and inner blanks",
		"nul\x00 esc\x1b del\x7f c1\u0085": "nul? esc? del? c1?",
		"bad \xff utf-8":                   "bad ? utf-8",
		"line\r\nX-Injected: yes":          "line??X-Injected: yes",
		"j\u00fcrgen":                      "j\u00fcrgen",
		strings.Repeat("x", 2000):          strings.Repeat("x", MaxReplyText),
		strings.Repeat("\u00fc", 600):      strings.Repeat("\u00fc", MaxReplyText/2),
	} {
		if got := SanitizeText(in); got != want {
			t.Errorf("SanitizeText(%.40q) = %.40q, want %.40q", in, got, want)
		}
	}
}

func FuzzSanitizeText(f *testing.F) {
	f.Add("a  b\t\x00\xff")
	f.Add(" x ")
	f.Fuzz(func(t *testing.T, s string) {
		out := SanitizeText(s)
		checkLine(t, out)
		if len(out) > MaxReplyText || SanitizeText(out) != out {
			t.Fatalf("%q sanitised to %q, which is not a fixed point", s, out)
		}
	})
}
