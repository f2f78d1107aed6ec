package smtp

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for line, want := range map[string]Command{
		"EHLO client.example\r\n":        {"EHLO", "client.example"},
		"mail FROM:<a@b> SIZE=1\r\n":     {"MAIL", "FROM:<a@b> SIZE=1"},
		"Bdat 10 LAST\r\n":               {"BDAT", "10 LAST"},
		"QUIT\r\n":                       {"QUIT", ""},
		"starttls\r\n":                   {"STARTTLS", ""},
		"\r\n":                           {"", ""},
		"NOOP  two spaces\r\n":           {"NOOP", " two spaces"},
		"x-unknown-verb argument\r\n":    {"X-UNKNOWN-VERB", "argument"},
		"RCPT TO:<ü@bücher.example>\r\n": {"RCPT", "TO:<ü@bücher.example>"},
	} {
		got, err := ParseCommand([]byte(line))
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", line, got, err, want)
		}
	}
	for line, want := range map[string]error{
		"EHLO x\n":         ErrCommandLineEnd,
		"EHLO x\r":         ErrCommandLineEnd,
		"EHLO x\rNOOP\r\n": ErrCommandLineEnd,
		"EHLO x\nNOOP\r\n": ErrCommandLineEnd,
		"":                 ErrCommandLineEnd,
		"EHLO \x00\r\n":    ErrCommandNUL,
	} {
		if _, err := ParseCommand([]byte(line)); err != want {
			t.Errorf("%q: %v, want %v", line, err, want)
		}
	}
}

func TestParseParams(t *testing.T) {
	got, err := ParseParams("SIZE=100 body=8BITMIME  SMTPUTF8 ENVID=a+2Bb X-EXT-1=ü")
	if err != nil {
		t.Fatal(err)
	}
	want := []Param{{"SIZE", "100", true}, {"BODY", "8BITMIME", true}, {"SMTPUTF8", "", false}, {"ENVID", "a+2Bb", true}, {"X-EXT-1", "ü", true}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("param %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{
		"SIZE=", "=1", "-X=1", "SI_ZE=1", "SIZE=1 size=2", "ENVID=a=b", "X=\x7f",
		strings.Repeat("A ", MaxParams) + "B",
	} {
		if p, err := ParseParams(bad); err == nil {
			t.Errorf("%q accepted: %+v", bad, p)
		}
	}
	if p, err := ParseParams(strings.TrimSpace(strings.Repeat("A ", 0) + "")); err != nil || len(p) != 0 {
		t.Errorf("no parameters: %+v, %v", p, err)
	}
}

// FuzzParseCommand: the command parser never panics, accepts exactly the
// lines that end in CRLF with no other CR, LF or NUL, and gives back a
// verb and argument that rebuild the line (the verb case-folded).
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO x\r\n", "mail FROM:<a@b>\r\n", "\r\n", "x\n", "\x00\r\n", "BDAT 1 LAST\r\n", "héllo wörld\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		n := len(line)
		ok := n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' && !bytes.ContainsAny(line[:n-2], "\r\n\x00")
		if ok != (err == nil) {
			t.Fatalf("%q: error %v, want ok=%v", line, err, ok)
		}
		if err != nil {
			return
		}
		text := string(line[:n-2])
		verb, arg, _ := strings.Cut(text, " ")
		if cmd.Verb != strings.ToUpper(verb) || cmd.Arg != arg {
			t.Fatalf("%q: %+v", line, cmd)
		}
	})
}

// FuzzParseParams: never panics, and what it accepts has the grammar of
// RFC 5321 section 4.1.2, at most MaxParams parameters, no keyword twice.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{"SIZE=1 BODY=8BITMIME", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b", "SMTPUTF8", "A=1 A=2", "=", "X-Y=ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseParams(s)
		if err != nil {
			return
		}
		if len(ps) > MaxParams {
			t.Fatalf("%q: %d parameters", s, len(ps))
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if seen[p.Keyword] || !validKeyword(p.Keyword) || p.Keyword != strings.ToUpper(p.Keyword) {
				t.Fatalf("%q: keyword %q", s, p.Keyword)
			}
			seen[p.Keyword] = true
			if p.HasValue && !validParamValue(p.Value) || !p.HasValue && p.Value != "" {
				t.Fatalf("%q: value %q", s, p.Value)
			}
		}
	})
}
