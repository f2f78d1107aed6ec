package courier

import "testing"

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
	} {
		r := parseReply(tc.code, tc.msg)
		if r.enhanced != tc.enhanced || r.line() != tc.line {
			t.Errorf("parseReply(%d, %q) = %q %q, want %q %q", tc.code, tc.msg, r.enhanced, r.line(), tc.enhanced, tc.line)
		}
	}
}

func TestParameterEncodings(t *testing.T) {
	for in, want := range map[string]string{
		"rfc822;a+b=c@example.org":       "ORCPT=rfc822;a+2Bb+3Dc@example.org",
		"RFC822;A@example.org":           "ORCPT=RFC822;A@example.org",
		"utf-8;j\u00fcrgen@example.org":  `ORCPT=utf-8;j\x{FC}rgen@example.org`,
		"rfc822;j\u00fcrgen@example.org": `ORCPT=utf-8;j\x{FC}rgen@example.org`,
		"no type":                        "",
		"bad type!;a@b":                  "",
		"rfc822;":                        "",
	} {
		if got := orcptParam(in); got != want {
			t.Errorf("orcptParam(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"failure", "Delay", "FAILURE"}, "NOTIFY=FAILURE,DELAY"},
		{[]string{"NEVER"}, "NOTIFY=NEVER"},
		{[]string{"NEVER", "SUCCESS"}, ""},
		{[]string{"sometimes"}, ""},
		{nil, ""},
	} {
		if got := notifyParam(tc.in); got != tc.want {
			t.Errorf("notifyParam(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
