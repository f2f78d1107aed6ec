package courier

import "testing"

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
