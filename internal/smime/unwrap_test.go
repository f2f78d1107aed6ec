package smime

import (
	"strings"
	"testing"
)

func TestUnwrap(t *testing.T) {
	t.Parallel()
	outerMsg := "Received: from gw.example.net\r\n" +
		"From: alice@example.net\r\n" +
		"Return-Path: <alice@example.net>\r\n" +
		"To: bob@example.org\r\n" +
		"Subject: hello\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nMIAG\r\n"
	outer, _ := splitHeader([]byte(outerMsg))
	// The trace fields are not joined: Open returns them as Trace.
	joined := "From: alice@example.net\r\nTo: bob@example.org\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
	whole := "From: alice@example.net\r\nTo: bob@example.org\r\nSubject: the real one\r\n\r\n\xff binary body\r\n"
	for _, tc := range []struct {
		name, pt, want string
	}{
		{"whole message", whole, whole},
		{"whole message, Sender only", "Sender: x@example.net\n\nbody\n", "Sender: x@example.net\n\nbody\n"},
		{"message/rfc822", "Content-Type: message/rfc822\r\n\r\n" + whole, whole},
		{"message/rfc822 upper case, 8bit", "content-type: MESSAGE/RFC822; x=y\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + whole, whole},
		{"message/rfc822 base64", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogYUBiLmMNCg0KaGk=\r\n", "From: a@b.c\r\n\r\nhi"},
		{"entity", "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n", joined + "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n"},
		{"entity with LF", "Content-Type: text/plain\n\nhi\n", joined + "Content-Type: text/plain\n\nhi\n"},
		{"entity without header fields", "\r\nbare body\r\n", joined + "\r\nbare body\r\n"},
		{"bare text", "just some text\r\n", joined + "\r\njust some text\r\n"},
		{"bare text beyond the header bound", strings.Repeat("just some text\r\n", 100), joined + "\r\n" + strings.Repeat("just some text\r\n", 100)},
	} {
		got, err := unwrap([]byte(tc.pt), outer, 1000)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, pt, want string }{
		{"unknown encoding of message/rfc822", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: x-uue\r\n\r\nbegin", "unsupported Content-Transfer-Encoding"},
		{"header beyond the bound", "From: a@example.net\r\n" + strings.Repeat("X-A: b\r\n", 200) + "\r\nbody\r\n", "header section of 1623 bytes, limit 1000"},
		{"too many header lines", "From: a@example.net\r\n" + strings.Repeat("X:\r\n", maxHeaderFields) + "\r\nbody\r\n", "more than 1000 header lines"},
		{"inner message header beyond the bound", "Content-Type: message/rfc822\r\n\r\nFrom: a@example.net\r\n" + strings.Repeat("X-A: b\r\n", 200) + "\r\nbody\r\n", "header section of"},
	} {
		max := 1000
		if tc.name == "too many header lines" {
			max = 1 << 20
		}
		if _, err := unwrap([]byte(tc.pt), outer, max); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
