package smime

import (
	"bytes"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

func TestCheckContent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, out string
		eightBit      bool
		err           string
	}{
		{"crlf", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n\r\nbody\r\n", false, ""},
		{"lf", "A: 1\n\nbody\n", "A: 1\r\n\r\nbody\r\n", false, ""},
		{"mixed", "A: 1\r\n\nbody\n", "A: 1\r\n\r\nbody\r\n", false, ""},
		{"no final line end", "A: 1\r\n\r\nbody", "A: 1\r\n\r\nbody\r\n", false, ""},
		{"empty", "", "\r\n", false, ""},
		{"8-bit", "A: 1\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n", "A: 1\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n", true, ""},
		{"8-bit in the last bytes", "A: 1\r\n\r\n12345678\xff", "A: 1\r\n\r\n12345678\xff\r\n", true, ""},
		{"dot lines stay (the courier stuffs them)", "A: 1\n\n.\n..\n", "A: 1\r\n\r\n.\r\n..\r\n", false, ""},
		{"NUL", "A: 1\r\n\r\nab\x00cd\r\n", "", false, "a NUL byte at offset 10"},
		{"bare CR", "A: 1\r\n\r\nab\rcd\r\n", "", false, "a bare CR (not followed by LF) at offset 10"},
		{"bare CR at the end", "A: 1\r\n\r\nab\r", "", false, "a bare CR (not followed by LF) at offset 10"},
		{"CR CR LF", "A: 1\r\r\n\r\n", "", false, "a bare CR (not followed by LF) at offset 4"},
		// SMTP smuggling: "\r.\r\n" and a second transaction after it.
		{"smuggled end of data", "A: 1\r\n\r\nhi\r.\r\nMAIL FROM:<x@example.org>\r\n", "", false, "a bare CR (not followed by LF) at offset 10"},
	} {
		out, eightBit, err := checkContent([]byte(tc.in))
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err || out != nil {
				t.Errorf("%s: %q, %v; want the error %q", tc.name, out, err, tc.err)
			}
		case err != nil || string(out) != tc.out || eightBit != tc.eightBit:
			t.Errorf("%s: %q, %v, %v; want %q, %v", tc.name, out, eightBit, err, tc.out, tc.eightBit)
		}
	}
	// Content that needs no change is not copied.
	in := []byte("A: 1\r\n\r\nbody\r\n")
	if out, _, _ := checkContent(in); &out[0] != &in[0] {
		t.Error("clean content was copied")
	}
}

// TestOpenChecksDecryptedContent: what a peer encrypted is held to the
// rules of the strict DATA reader before it is relayed.
func TestOpenChecksDecryptedContent(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	keys := []cms.KeyPair{rsa}
	seal := func(pt string) []byte {
		return sealed(t, []byte(pt), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	}
	const hdr = "From: alice@example.org\r\nTo: bob@example.net\r\n\r\n"
	for _, tc := range []struct {
		name, pt, want, err string
		eightBit            bool
	}{
		{"smuggled second message", hdr + "hi\r\n\r.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n", "", "decrypted content: a bare CR (not followed by LF) at offset 52", false},
		{"NUL", hdr + "hi\x00\r\n", "", "decrypted content: a NUL byte at offset 50", false},
		{"LF only, as openssl smime writes", "From: alice@example.org\nTo: bob@example.net\n\nhi\n.\n", hdr + "hi\r\n.\r\n", "", false},
		{"no final line end", hdr + "hi", hdr + "hi\r\n", "", false},
		{"8-bit", hdr + "Grüße\r\n", hdr + "Grüße\r\n", "", true},
		{"7-bit", hdr + "hello\r\n", hdr + "hello\r\n", "", false},
	} {
		r := Open(seal(tc.pt), keys, OpenOptions{})
		if tc.err != "" {
			if r.Outcome != Failed || !strings.HasSuffix(r.Err.Error(), tc.err) || r.Message != nil || r.Info == nil {
				t.Errorf("%s: %v, %v; want Failed with %q", tc.name, r.Outcome, r.Err, tc.err)
			}
			continue
		}
		if r.Outcome != Opened || string(r.Message) != tc.want || r.EightBit != tc.eightBit {
			t.Errorf("%s: %v, %v, 8-bit %v:\n%q\nwant\n%q, 8-bit %v", tc.name, r.Outcome, r.Err, r.EightBit, r.Message, tc.want, tc.eightBit)
		}
	}
	// A peer that encrypted an LF-only entity: the outer fields joined to
	// it and its own lines all end in CRLF.
	out := runTool(t, nil, []byte("Content-Type: text/plain\n\nline\n"), "openssl", "smime", "-encrypt", "-aes256", "-from", "alice@example.org", fixture("rsa.crt"))
	r := Open(out, keys, OpenOptions{})
	if want := "From: alice@example.org\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nline\r\n"; r.Outcome != Opened || string(r.Message) != want {
		t.Errorf("openssl smime entity: %v, %v\n%q\nwant\n%q", r.Outcome, r.Err, r.Message, want)
	}
}

// TestOpenKeepsTrace: the outer header's trace fields (RFC 5321 section
// 4.4), our own Received field with the client's address among them,
// survive decryption in their order, apart from the message and not twice.
func TestOpenKeepsTrace(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	keys := []cms.KeyPair{rsa}
	trace := "Received: from partner.example.org (partner.example.org [192.0.2.7])\r\n\tby gw.example.net with ESMTPS id ABC; Sat, 28 Nov 2026 10:00:02 +0000\r\n" +
		"Received: from mail.example.org by partner.example.org; Sat, 28 Nov 2026 10:00:01 +0000\r\n" +
		"Return-Path: <alice@example.org>\r\n"
	whole := shapes["plain text"]
	inner := "Received: from client by mail.example.org; Sat, 28 Nov 2026 10:00:00 +0000\r\n" + whole
	entity := "Content-Type: text/plain\r\n\r\nonly the body\r\n"
	entityMsg := runTool(t, nil, []byte(entity), "openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm",
		"-from", "alice@example.org", "-to", "bob@example.net", fixture("rsa.crt"))
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"whole message", trace + string(sealed(t, []byte(inner), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})), inner},
		{"entity", trace + string(entityMsg), "To: bob@example.net\r\nFrom: alice@example.org\r\nMIME-Version: 1.0\r\n" + entity},
		{"trace between other fields, LF", strings.ReplaceAll("X-Before: 1\r\n"+trace+string(entityMsg), "\r\n", "\n"),
			"X-Before: 1\r\nTo: bob@example.net\r\nFrom: alice@example.org\r\nMIME-Version: 1.0\r\n" + entity},
	} {
		r := Open([]byte(tc.msg), keys, OpenOptions{})
		if r.Outcome != Opened {
			t.Errorf("%s: %v, %v", tc.name, r.Outcome, r.Err)
			continue
		}
		if string(r.Trace) != trace {
			t.Errorf("%s: Trace\n%q\nwant\n%q", tc.name, r.Trace, trace)
		}
		if string(r.Message) != tc.want {
			t.Errorf("%s: Message\n%q\nwant\n%q", tc.name, r.Message, tc.want)
		}
		if bytes.Contains(r.Message, []byte("192.0.2.7")) || bytes.Contains(r.Message, []byte("Return-Path")) {
			t.Errorf("%s: an outer trace field is in Message too", tc.name)
		}
	}
	// Without trace fields outside, Trace is empty.
	r := Open(sealed(t, []byte(whole), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM}), keys, OpenOptions{})
	if r.Outcome != Opened || r.Trace != nil {
		t.Errorf("no trace: %v, %q", r.Outcome, r.Trace)
	}
}

// FuzzCheckContent: whatever the input, checkContent either refuses it
// with a reason, and then it has a NUL or a bare CR, or returns it with
// every bare LF made CRLF and a final CRLF, and then the output has no NUL,
// no bare CR, no bare LF, and ends in CRLF.
func FuzzCheckContent(f *testing.F) {
	for _, s := range []string{"", "\r\n", "a\nb", "a\r\nb\r\n", "a\rb", "\x00", "\r", "\n", "\r\r\n", "x\r\n.\r\n", "\xff\xfe\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		out, eightBit, err := checkContent(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("checkContent modified its input")
		}
		want, ok := relayed(string(in))
		if err != nil {
			if ok || err.Error() == "" {
				t.Fatalf("%q refused with %v", in, err)
			}
			return
		}
		if !ok || string(out) != want {
			t.Fatalf("%q gave %q, want %q", in, out, want)
		}
		if bytes.IndexByte(out, 0) >= 0 || !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("%q gave %q", in, out)
		}
		for i, c := range out {
			if c == '\r' && (i+1 == len(out) || out[i+1] != '\n') || c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("%q gave %q: a bare line end at %d", in, out, i)
			}
		}
		if eightBit != bytes.ContainsFunc(in, func(r rune) bool { return r >= 0x80 }) {
			t.Fatalf("%q: 8-bit %v", in, eightBit)
		}
	})
}
