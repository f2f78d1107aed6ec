package smime

import (
	"bytes"
	"strings"
	"testing"
)

func TestSplitHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, msg, header, body string
	}{
		{"crlf", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n", "body\r\n"},
		{"lf", "A: 1\nB: 2\n\nbody\n", "A: 1\nB: 2\n\n", "body\n"},
		{"folded", "A: 1\r\n  more\r\n\r\nbody", "A: 1\r\n  more\r\n\r\n", "body"},
		{"no body", "A: 1\r\n", "A: 1\r\n", ""},
		{"no header", "\r\nbody", "\r\n", "body"},
		{"blank line in body stays in body", "A: 1\n\nx\n\ny", "A: 1\n\n", "x\n\ny"},
		{"lone CR is not a line end", "A: 1\r\r\nB: 2\r\n\r\nz", "A: 1\r\r\nB: 2\r\n\r\n", "z"},
	} {
		h, b := splitHeader([]byte(tc.msg))
		if string(h) != tc.header || string(b) != tc.body {
			t.Errorf("%s: splitHeader = %q, %q; want %q, %q", tc.name, h, b, tc.header, tc.body)
		}
	}
}

func outer(t *testing.T, msg string, protect bool) string {
	t.Helper()
	hdr, _ := splitHeader([]byte(msg))
	var b bytes.Buffer
	writeOuterFields(&b, hdr, protect)
	return b.String()
}

const richHeader = "Received: from a by b\r\n" +
	"From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net,\r\n carol@example.net\r\n" +
	"cc: dave@example.net\r\n" +
	"BCC: secret@example.net\r\n" +
	"Bcc: other-secret@example.net\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= quarterly numbers\r\n" +
	"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Secret-Project: falcon\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; b=abc\r\n" +
	"\r\nbody\r\n"

func TestOuterFields(t *testing.T) {
	t.Parallel()
	got := outer(t, richHeader, false)
	want := "From: Alice <alice@example.org>\r\n" +
		"To: bob@example.net,\r\n carol@example.net\r\n" +
		"cc: dave@example.net\r\n" +
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= quarterly numbers\r\n" +
		"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@example.org>\r\n"
	if got != want {
		t.Errorf("outer fields:\n%s\nwant:\n%s", got, want)
	}
	for _, secret := range []string{"secret@", "falcon", "Received", "DKIM", "Content-Type", "MIME-Version"} {
		if strings.Contains(got, secret) {
			t.Errorf("outer fields carry %q", secret)
		}
	}
}

func TestOuterFieldsProtectSubject(t *testing.T) {
	t.Parallel()
	got := outer(t, richHeader, true)
	if !strings.Contains(got, "\r\nSubject: [...]\r\n") || strings.Contains(got, "quarterly") {
		t.Errorf("protect_subject: outer fields are\n%s", got)
	}
	// A message without a Subject gets none outside either.
	got = outer(t, "From: a@example.org\r\n\r\nx", true)
	if strings.Contains(got, "Subject") {
		t.Errorf("a Subject appeared: %q", got)
	}
}

func TestOuterFieldsKeepBytes(t *testing.T) {
	t.Parallel()
	// SMTPUTF8 (RFC 6532) addresses and LF line ends: the bytes of the value
	// stay as they were, only the line end becomes CRLF.
	got := outer(t, "From: Jörg <jörg@bücher.example>\nTo:   spaced@example.net  \n\nx", false)
	want := "From: Jörg <jörg@bücher.example>\r\nTo:   spaced@example.net  \r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOuterFieldsListHasReasons(t *testing.T) {
	t.Parallel()
	for _, f := range outerFields {
		if f.reason == "" || neverOutside[f.name] {
			t.Errorf("outer field %s: reason %q, never outside %v", f.name, f.reason, neverOutside[f.name])
		}
	}
}

func TestHeaderScannerTolerant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		skipped      int
		want         map[string]string
	}{
		{"clean", "From: a@example.org\r\nTo: b@example.net\r\n\r\n", 0, map[string]string{"From": "a@example.org", "To": "b@example.net"}},
		{"mbox From line", "From alice@example.org Sat Nov 28 10:00:00 2026\nFrom: a@example.org\nContent-Type: application/pkcs7-mime\n\n", 1,
			map[string]string{"From": "a@example.org", "Content-Type": "application/pkcs7-mime"}},
		{"folded first line", " junk\r\nTo: b@example.net\r\n\r\n", 1, map[string]string{"To": "b@example.net"}},
		{"line without colon", "From: a@example.org\r\nthis is not a field\r\nSubject: s\r\n  folded\r\n\r\n", 1,
			map[string]string{"From": "a@example.org", "Subject": "s  folded"}},
		{"no final line end", "From: a@example.org\r\nbad line\r\nTo: b@example.net", 1, map[string]string{"From": "a@example.org", "To": "b@example.net"}},
		{"blank before the colon", "Subject : s\r\n\r\n", 0, map[string]string{"Subject": "s"}},
		{"ends at the blank line", "A: 1\r\n\r\nB: 2\r\n", 0, map[string]string{"A": "1"}},
	} {
		s := newHeaderScanner([]byte(tc.header))
		got := map[string]string{}
		for s.next() {
			got[string(s.name)] = s.value()
		}
		if s.skipped != tc.skipped {
			t.Errorf("%s: skipped %d, want %d", tc.name, s.skipped, tc.skipped)
		}
		if len(got) != len(tc.want) || s.fields != len(tc.want) {
			t.Errorf("%s: fields %q, want %q", tc.name, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, got[k], v)
			}
		}
	}
}

// TestHeaderScannerAgreesWithTextproto: on a header that go-message's
// textproto reads without error, the scanner finds the same fields, raw.
func TestHeaderScannerAgreesWithTextproto(t *testing.T) {
	t.Parallel()
	for _, m := range []string{richHeader, shapes["8-bit utf-8"], "A: 1\n  folded\nB:2\n\n"} {
		hdr, _ := splitHeader([]byte(m))
		h, err := readHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for fs := h.Fields(); fs.Next(); {
			raw, _ := fs.Raw()
			want = append(want, string(raw))
		}
		for s := newHeaderScanner(hdr); s.next(); {
			var b bytes.Buffer
			writeCRLF(&b, s.raw)
			got = append(got, b.String())
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("scanner %q\ntextproto %q", got, want)
		}
	}
}
