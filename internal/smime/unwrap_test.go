package smime

import (
	"testing"
)

func TestUnwrap(t *testing.T) {
	t.Parallel()
	outerMsg := "Received: from gw.example.net\r\n" +
		"From: alice@example.net\r\n" +
		"To: bob@example.org\r\n" +
		"Subject: hello\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nMIAG\r\n"
	hdr, _ := splitHeader([]byte(outerMsg))
	outer, err := readHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	joined := "Received: from gw.example.net\r\nFrom: alice@example.net\r\nTo: bob@example.org\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
	whole := "From: alice@example.net\r\nTo: bob@example.org\r\nSubject: the real one\r\n\r\n\xff binary \x00 body\r\n"
	for _, tc := range []struct {
		name, pt, want string
	}{
		{"whole message", whole, whole},
		{"whole message, Sender only", "Sender: x@example.net\n\nbody\n", "Sender: x@example.net\n\nbody\n"},
		{"message/rfc822", "Content-Type: message/rfc822\r\n\r\n" + whole, whole},
		{"message/rfc822 upper case, 8bit", "content-type: MESSAGE/RFC822; x=y\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + whole, whole},
		{"message/rfc822 base64", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogYUBiLmMNCg0KaGk=\r\n", "From: a@b.c\r\n\r\nhi"},
		{"entity", "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n", joined + "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n"},
		{"entity with LF", "Content-Type: text/plain\n\nhi\n", "Received: from gw.example.net\nFrom: alice@example.net\nTo: bob@example.org\nSubject: hello\nMIME-Version: 1.0\nContent-Type: text/plain\n\nhi\n"},
		{"entity without header fields", "\r\nbare body\r\n", joined + "\r\nbare body\r\n"},
		{"bare text", "just some text\r\n", joined + "\r\njust some text\r\n"},
	} {
		got, err := unwrap([]byte(tc.pt), outer)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
	if _, err := unwrap([]byte("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: x-uue\r\n\r\nbegin"), outer); err == nil {
		t.Error("an unknown encoding of message/rfc822 was accepted")
	}
}
