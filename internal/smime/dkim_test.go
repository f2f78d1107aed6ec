package smime

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// A small DKIM signer and verifier (RFC 6376, rsa-sha256, relaxed/relaxed),
// enough to show that a signature made before Seal verifies after Open and
// after `openssl cms -decrypt`. The public key stands in for the DNS record.

var (
	wspRun = regexp.MustCompile(`[ \t]+`)
	bTag   = regexp.MustCompile(`;[ \t\r\n]*b=`)
)

// dkimBody is the relaxed body canonicalization (RFC 6376 section 3.4.4).
func dkimBody(body []byte) []byte {
	lines := strings.Split(string(body), "\r\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(wspRun.ReplaceAllString(l, " "), " ")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// dkimHeader is the relaxed header canonicalization (section 3.4.2) of one
// raw field.
func dkimHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.NewReplacer("\r\n", "", "\n", "").Replace(value)
	value = strings.TrimSpace(wspRun.ReplaceAllString(value, " "))
	return strings.ToLower(strings.TrimSpace(name)) + ":" + value
}

// rawFields splits a CRLF header section into raw fields, folding included.
func rawFields(header string) []string {
	var fields []string
	for _, l := range strings.SplitAfter(strings.TrimSuffix(header, "\r\n\r\n")+"\r\n", "\r\n") {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += l
		} else {
			fields = append(fields, l)
		}
	}
	return fields
}

// dkimHash hashes the signed fields (each name's occurrences from the
// bottom up, section 5.4.2) and sigField, the signature field with an empty
// b= value (section 3.7).
func dkimHash(fields []string, signed []string, sigField string) []byte {
	h := sha256.New()
	used := map[int]bool{}
	for _, name := range signed {
		for i := len(fields) - 1; i >= 0; i-- {
			n, _, _ := strings.Cut(fields[i], ":")
			if !used[i] && strings.EqualFold(strings.TrimSpace(n), name) {
				used[i] = true
				h.Write([]byte(dkimHeader(fields[i]) + "\r\n"))
				break
			}
		}
	}
	h.Write([]byte(dkimHeader(sigField)))
	return h.Sum(nil)
}

var dkimSigned = []string{"from", "to", "subject", "date", "message-id", "content-type"}

func dkimSign(t testing.TB, msg []byte, key *rsa.PrivateKey) []byte {
	t.Helper()
	header, body := splitHeader(msg)
	bh := sha256.Sum256(dkimBody(body))
	sig := "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=test;\r\n" +
		"\th=" + strings.Join(dkimSigned, ":") + "; bh=" + base64.StdEncoding.EncodeToString(bh[:]) + ";\r\n\tb="
	digest := dkimHash(rawFields(string(header)), dkimSigned, sig)
	s, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(sig+base64.StdEncoding.EncodeToString(s)+"\r\n"), msg...)
}

func dkimVerify(msg []byte, pub *rsa.PublicKey) error {
	header, body := splitHeader(msg)
	fields := rawFields(string(header))
	if len(fields) == 0 || !strings.HasPrefix(fields[0], "DKIM-Signature:") {
		return errors.New("no DKIM-Signature field on top")
	}
	sig := strings.TrimSuffix(fields[0], "\r\n")
	tags := map[string]string{}
	_, v, _ := strings.Cut(sig, ":")
	for _, tag := range strings.Split(v, ";") {
		k, val, _ := strings.Cut(tag, "=")
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(val), "")
	}
	bh := sha256.Sum256(dkimBody(body))
	if tags["bh"] != base64.StdEncoding.EncodeToString(bh[:]) {
		return errors.New("body hash does not verify")
	}
	b, err := base64.StdEncoding.DecodeString(tags["b"])
	if err != nil {
		return fmt.Errorf("b= tag: %w", err)
	}
	// The b= tag (not bh=) loses its value; this signer writes it last.
	loc := bTag.FindAllStringIndex(sig, -1)
	if len(loc) == 0 {
		return errors.New("no b= tag")
	}
	digest := dkimHash(fields[1:], strings.Split(tags["h"], ":"), sig[:loc[len(loc)-1][1]])
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, b); err != nil {
		return fmt.Errorf("signature does not verify: %w", err)
	}
	return nil
}

func TestDKIMSurvives(t *testing.T) {
	t.Parallel()
	signer := loadKey(t, "dkim").(*rsa.PrivateKey)
	gw := loadPair(t, "rsa")
	// Folded fields, runs of blanks and trailing empty lines: relaxed
	// canonicalization has work to do, and any re-encoding would show.
	msg := dkimSign(t, []byte("From: Alice  <alice@example.org>\r\nTo: bob@example.net,\r\n\tcarol@example.net\r\n"+
		"Subject:   Grüße   aus\r\n Köln\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dkim@example.org>\r\n"+
		"Bcc: hidden@example.net\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+
		"Grüße  \t aus Köln.   \r\n\r\n\r\n"), signer)
	if err := dkimVerify(msg, &signer.PublicKey); err != nil {
		t.Fatalf("before sealing: %v", err)
	}
	// The verifier is not a no-op: a changed body or header fails it.
	if err := dkimVerify(bytes.Replace(msg, []byte("Köln."), []byte("Bonn."), 1), &signer.PublicKey); err == nil {
		t.Fatal("a changed body still verifies")
	}
	if err := dkimVerify(bytes.Replace(msg, []byte("<dkim@"), []byte("<dkim2@"), 1), &signer.PublicKey); err == nil {
		t.Fatal("a changed Message-ID still verifies")
	}
	for _, c := range []cms.ContentCipher{cms.AES256GCM, cms.AES128CBC} {
		out := sealed(t, msg, SealOptions{Recipients: []cms.Recipient{{Cert: gw.Cert}}, Cipher: c, ProtectSubject: true})
		r := Open(out, []cms.KeyPair{gw}, OpenOptions{})
		if r.Outcome != Opened {
			t.Fatalf("%v: %v, %v", c, r.Outcome, r.Err)
		}
		if err := dkimVerify(r.Message, &signer.PublicKey); err != nil {
			t.Errorf("%v: after Open: %v", c, err)
		}
		f := filepath.Join(t.TempDir(), "sealed.eml")
		if err := os.WriteFile(f, out, 0o600); err != nil {
			t.Fatal(err)
		}
		got := runTool(t, nil, nil, "openssl", "cms", "-decrypt", "-binary", "-in", f, "-recip", fixture("rsa.crt"), "-inkey", fixture("rsa.key"))
		if err := dkimVerify(got, &signer.PublicKey); err != nil {
			t.Errorf("%v: after openssl cms -decrypt: %v", c, err)
		}
		if !bytes.Equal(got, msg) || !bytes.Equal(r.Message, msg) {
			t.Errorf("%v: the opened message is not byte for byte the signed one", c)
		}
	}
}
