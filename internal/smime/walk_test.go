package smime

import (
	"bytes"
	"compress/zlib"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// envelopedDER encrypts pt to cert with cms.Encrypt (AES-128-GCM, cheap).
func envelopedDER(t testing.TB, pt string, cert *x509.Certificate) []byte {
	t.Helper()
	var der bytes.Buffer
	if err := cms.Encrypt(&der, []byte(pt), []cms.Recipient{{Cert: cert}}, cms.EncryptOptions{Cipher: cms.AES128GCM}); err != nil {
		t.Fatal(err)
	}
	return der.Bytes()
}

// base64Lines is b in base64, CRLF lines of 76 characters.
func base64Lines(b []byte) string {
	var s bytes.Buffer
	enc := newLineEncoder(&s)
	enc.Write(b)
	enc.Close()
	return s.String()
}

// encryptedEntity is a MIME entity holding pt encrypted to cert, as S/MIME
// labels it (RFC 8551 section 3.4).
func encryptedEntity(t testing.TB, pt string, cert *x509.Certificate) string {
	return "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64Lines(envelopedDER(t, pt, cert))
}

const outerFrom = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hidden\r\nMIME-Version: 1.0\r\n"

// mixed is a multipart/mixed message of the given parts.
func mixed(parts ...string) string {
	var b strings.Builder
	b.WriteString(outerFrom + "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\npreamble\r\n")
	for _, p := range parts {
		b.WriteString("--mix\r\n" + p + "\r\n")
	}
	b.WriteString("--mix--\r\nepilogue\r\n")
	return b.String()
}

// compressedDER is a CompressedData ContentInfo (RFC 3274) of content,
// built by hand: the openssl here has no zlib.
func compressedDER(t testing.TB, content []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(content)
	zw.Close()
	type algID struct{ Algorithm asn1.ObjectIdentifier }
	type encap struct {
		ContentType asn1.ObjectIdentifier
		Content     []byte `asn1:"explicit,tag:0"`
	}
	type compressedData struct {
		Version int
		Alg     algID
		Encap   encap
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     compressedData `asn1:"explicit,tag:0"`
	}
	der, err := asn1.Marshal(contentInfo{
		ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9},
		Content: compressedData{
			Alg:   algID{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 8}},
			Encap: encap{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}, z.Bytes()},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestOpenHiddenCiphertext: ciphertext to our certificate is found by what
// the body contains, whatever the label, and inside the structures that can
// hide it. Where Open can relay the plaintext it opens it; elsewhere the
// message is Failed with the part named; never is it relayed still
// encrypted (draft-ramsdell section 5.2).
func TestOpenHiddenCiphertext(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	other := loadPair(t, "other")
	keys := []cms.KeyPair{rsa}
	inner := shapes["plain text"]
	want, _ := relayed(inner)
	der := envelopedDER(t, inner, rsa.Cert)
	b64 := base64Lines(der)
	toUs := encryptedEntity(t, inner, rsa.Cert)
	toOther := encryptedEntity(t, inner, other.Cert)
	sign := func(entity string, args ...string) string {
		t.Helper()
		return string(runTool(t, nil, []byte(entity), "openssl", append(args,
			"-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key"),
			"-from", "alice@example.org", "-to", "bob@example.net", "-subject", "signed")...))
	}
	detached := sign(toUs, "smime", "-sign")
	opaque := sign(toUs, "smime", "-sign", "-nodetach")
	// BER with indefinite lengths and the eContent in pieces.
	streamed := sign(toUs, "cms", "-sign", "-nodetach", "-stream", "-binary")
	signedPart := string(runTool(t, nil, []byte(toUs), "openssl", "smime", "-sign", "-nodetach", "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key")))
	// RFC 1847 section 2.1: multipart/signed has two parts; with a third
	// the signed content is not the whole message.
	boundary := detached[strings.Index(detached, "boundary=\"")+len("boundary=\""):]
	boundary = boundary[:strings.IndexByte(boundary, '"')]
	threeParts := strings.Replace(detached, "\n--"+boundary+"--", "\n--"+boundary+"\nContent-Type: text/plain\n\nextra\n--"+boundary+"--", 1)
	forwarded := "Content-Type: message/rfc822\r\n\r\n" + outerFrom + toUs
	compressed := "Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64Lines(compressedDER(t, []byte(toUs)))
	deep := forwarded
	for i := 0; i < maxDepth; i++ {
		deep = "Content-Type: multipart/mixed; boundary=\"d" + fmt.Sprint(i) + "\"\r\n\r\n--d" + fmt.Sprint(i) + "\r\n" + deep + "\r\n--d" + fmt.Sprint(i) + "--\r\n"
	}
	for _, tc := range []struct {
		name  string
		msg   string
		want  Outcome
		where string // in Err for Failed
	}{
		{"labelled signed-data", outerFrom + "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, Opened, ""},
		{"labelled certs-only", outerFrom + "Content-Type: application/x-pkcs7-mime; smime-type=certs-only\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, Opened, ""},
		{"labelled text/plain", outerFrom + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, Opened, ""},
		{"octet-stream without a name", outerFrom + "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, Opened, ""},
		{"no Content-Type", outerFrom + "\r\n" + b64, Opened, ""},
		{"labelled multipart", outerFrom + "Content-Type: multipart/mixed; boundary=x\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, Opened, ""},
		{"binary, labelled text/plain", outerFrom + "Content-Type: text/plain\r\n\r\n" + string(der), Opened, ""},
		{"encrypt then sign, multipart/signed", detached, Opened, ""},
		{"encrypt then sign, opaque", opaque, Opened, ""},
		{"encrypt then sign, opaque BER stream", streamed, Opened, ""},
		{"attachment", mixed("Content-Type: text/plain\r\n\r\nsee the attachment", "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64),
			Failed, "ciphertext encrypted to our certificate in part 2 (application/octet-stream); not relayed"},
		{"attachment labelled S/MIME", mixed("Content-Type: text/plain\r\n\r\nhi", toUs), Failed, "in part 2 (application/pkcs7-mime)"},
		{"forwarded message", mixed("Content-Type: text/plain\r\n\r\nhi", forwarded), Failed, "in part 2.1 (application/pkcs7-mime)"},
		{"inside a signed attachment", mixed("Content-Type: text/plain\r\n\r\nhi", signedPart), Failed, "in part 2.1 (application/pkcs7-mime)"},
		{"compressed", outerFrom + compressed, Failed, "in part 1 (application/pkcs7-mime)"},
		{"multipart/signed of three parts", threeParts, Failed, "ciphertext encrypted to our certificate in part 1 (application/pkcs7-mime); not relayed"},
		{"too deep", outerFrom + deep, Failed, "MIME structure deeper than 16 levels: cannot be inspected for ciphertext; not relayed"},
		{"not for us, attached", mixed("Content-Type: text/plain\r\n\r\nhi", toOther), NotForUs, ""},
		{"not for us, top level", outerFrom + "Content-Type: text/plain\r\n\r\n" + base64Lines(envelopedDER(t, inner, other.Cert)), NotForUs, ""},
		{"not for us, signed", sign(toOther, "smime", "-sign"), NotForUs, ""},
		{"plain signed", sign("Content-Type: text/plain\r\n\r\nhi\r\n", "smime", "-sign"), NotEncrypted, ""},
		{"plain opaque signed", sign("Content-Type: text/plain\r\n\r\nhi\r\n", "smime", "-sign", "-nodetach"), NotEncrypted, ""},
		{"plain compressed", outerFrom + "Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64Lines(compressedDER(t, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"))), NotEncrypted, ""},
	} {
		r := Open([]byte(tc.msg), keys, OpenOptions{})
		if r.Outcome != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, r.Outcome, r.Err, tc.want)
			continue
		}
		switch tc.want {
		case Opened:
			if string(r.Message) != want {
				t.Errorf("%s: relays\n%q\nwant\n%q", tc.name, r.Message, want)
			}
		case Failed:
			if !strings.Contains(r.Err.Error(), tc.where) {
				t.Errorf("%s: %v, want it to say %q", tc.name, r.Err, tc.where)
			}
		}
	}
}

// TestOpenSignedLayerDropped: the signature around encrypted content is
// taken off with the ciphertext it covered, and the outer header stays.
func TestOpenSignedLayerDropped(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	entity := "Content-Type: text/plain; charset=utf-8\r\n\r\nonly the body was encrypted\r\n"
	signed := runTool(t, nil, []byte(encryptedEntity(t, entity, rsa.Cert)), "openssl", "smime", "-sign",
		"-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key"), "-from", "alice@example.org", "-to", "bob@example.net", "-subject", "s")
	r := Open(signed, []cms.KeyPair{rsa}, OpenOptions{})
	if r.Outcome != Opened {
		t.Fatalf("%v, %v", r.Outcome, r.Err)
	}
	want := "To: bob@example.net\r\nFrom: alice@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + entity
	if string(r.Message) != want || r.Where != "part 1 (application/pkcs7-mime)" {
		t.Errorf("relays, from %s,\n%q\nwant\n%q", r.Where, r.Message, want)
	}
}

// TestOpenWalkBounds: a message beyond a bound of the walk is Failed, with
// the bound named, and never passed.
func TestOpenWalkBounds(t *testing.T) {
	t.Parallel()
	keys := []cms.KeyPair{loadPair(t, "rsa")}
	manyParts := make([]string, maxParts)
	for i := range manyParts {
		manyParts[i] = "Content-Type: text/plain\r\n\r\nx"
	}
	deep := "Content-Type: text/plain\r\n\r\nthe bottom\r\n"
	for i := 0; i <= maxDepth; i++ {
		deep = "Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\n" + deep
	}
	bigHeader := "From: a@example.org\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("y", 1000)+"\r\n", 300) + "\r\nbody\r\n"
	manyFields := "From: a@example.org\r\n" + strings.Repeat("X: y\r\n", maxHeaderFields) + "\r\nbody\r\n"
	for _, tc := range []struct{ name, msg, want string }{
		{"parts", mixed(manyParts...), "more than 1000 MIME parts: the message cannot be inspected for ciphertext; not relayed"},
		{"depth", outerFrom + deep, "MIME structure deeper than 16 levels: cannot be inspected for ciphertext; not relayed"},
		{"header bytes", bigHeader, "the message: header section of 303623 bytes, limit 262144; it cannot be inspected for ciphertext; not relayed"},
		{"header bytes of a part", mixed("Content-Type: text/plain\r\n" + bigHeader), "part 1: header section of 303649 bytes"},
		{"header fields", manyFields, "more than 1000 header fields"},
		{"two Content-Types", mixed("Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\nhi\r\n--z--"),
			"part 1 (text/plain) has two Content-Type fields that differ"},
		{"two encodings", outerFrom + "Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\nhi\r\n", "two Content-Transfer-Encoding fields"},
	} {
		r := Open([]byte(tc.msg), keys, OpenOptions{})
		if r.Outcome != Failed || !strings.Contains(r.Err.Error(), tc.want) {
			t.Errorf("%s: %v, %v; want Failed saying %q", tc.name, r.Outcome, r.Err, tc.want)
		}
		if ins := Inspect([]byte(tc.msg), []*x509.Certificate{keys[0].Cert}, OpenOptions{}); ins.Err == nil {
			t.Errorf("%s: Inspect found nothing wrong", tc.name)
		}
	}
	// Just within the bounds: inspected and passed.
	for _, tc := range []struct{ name, msg string }{
		{"parts", mixed(manyParts[:maxParts-2]...)},
		{"depth", outerFrom + deep[strings.Index(deep, "\r\n\r\n")+4:]},
		{"header fields", "From: a@example.org\r\n" + strings.Repeat("X: y\r\n", maxHeaderFields-1) + "\r\nbody\r\n"},
		{"repeated Content-Type", outerFrom + "Content-Type: text/plain\r\ncontent-type: TEXT/PLAIN\r\n\r\nhi\r\n"},
	} {
		if r := Open([]byte(tc.msg), keys, OpenOptions{}); r.Outcome != NotEncrypted {
			t.Errorf("%s, within the bound: %v, %v", tc.name, r.Outcome, r.Err)
		}
	}
	// The header bound follows OpenOptions.MaxHeaderBytes.
	if r := Open([]byte(bigHeader), keys, OpenOptions{MaxHeaderBytes: 1 << 20}); r.Outcome != NotEncrypted {
		t.Errorf("MaxHeaderBytes raised: %v, %v", r.Outcome, r.Err)
	}
}

// TestInspectAgrees: Inspect, with no private key, says what Open does,
// for every form above and the plain ones.
func TestInspectAgrees(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	ec := loadPair(t, "ec")
	other := loadPair(t, "other")
	inner := shapes["plain text"]
	b64 := base64Lines(envelopedDER(t, inner, rsa.Cert))
	tampered := envelopedDER(t, inner, rsa.Cert)
	tampered[len(tampered)-3] ^= 1
	keyless := []cms.KeyPair{{Cert: rsa.Cert}}
	for _, tc := range []struct {
		name string
		msg  string
		keys []cms.KeyPair
	}{
		{"plain", shapes["plain text"], nil},
		{"multipart", shapes["multipart with attachment"], nil},
		{"to us", outerFrom + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, nil},
		{"to us, tampered", outerFrom + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines(tampered), nil},
		{"to us, key missing", outerFrom + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, keyless},
		{"to us, hidden", outerFrom + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64, nil},
		{"to us, attached", mixed("Content-Type: text/plain\r\n\r\nhi", encryptedEntity(t, inner, rsa.Cert)), nil},
		{"to someone else", mixed("Content-Type: text/plain\r\n\r\nhi", encryptedEntity(t, inner, other.Cert)), nil},
		{"labelled, not CMS", outerFrom + "Content-Type: application/pkcs7-mime\r\n\r\nnot base64 at all\r\n", nil},
		{"malformed CMS", outerFrom + "Content-Type: text/plain\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n", nil},
	} {
		keys := tc.keys
		if keys == nil {
			keys = []cms.KeyPair{ec, rsa}
		}
		certs := make([]*x509.Certificate, len(keys))
		for i, k := range keys {
			certs[i] = k.Cert
		}
		ins := Inspect([]byte(tc.msg), certs, OpenOptions{})
		r := Open([]byte(tc.msg), keys, OpenOptions{})
		if err := agree(ins, r); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// agree checks the contract between Inspect and Open stated at Inspect.
func agree(ins Inspection, r OpenResult) error {
	ok := false
	switch {
	case ins.Err != nil:
		ok = r.Outcome == Failed
	case ins.Encrypted && ins.ForUs:
		ok = r.Outcome == Opened || r.Outcome == KeyUnavailable || r.Outcome == Failed
	case ins.Encrypted:
		ok = r.Outcome == NotForUs
	default:
		ok = r.Outcome == NotEncrypted && !ins.ForUs
	}
	if !ok {
		return fmt.Errorf("Inspect says %+v, Open %v (%v)", ins, r.Outcome, r.Err)
	}
	return nil
}

// TestOpenKeyUnavailable: our certificate without its private key. The
// message waits: KeyUnavailable, never NotForUs (relayed encrypted) nor
// Failed (quarantined).
func TestOpenKeyUnavailable(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	ec := loadPair(t, "ec")
	msg := sealed(t, []byte(shapes["plain text"]), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	for name, keys := range map[string][]cms.KeyPair{
		"alone":            {{Cert: rsa.Cert}},
		"beside other key": {ec, {Cert: rsa.Cert}},
	} {
		r := Open(msg, keys, OpenOptions{})
		if r.Outcome != KeyUnavailable || !errors.Is(r.Err, cms.ErrKeyUnavailable) || r.Message != nil {
			t.Errorf("%s: %v, %v", name, r.Outcome, r.Err)
		}
		if ins := Inspect(msg, []*x509.Certificate{keys[len(keys)-1].Cert}, OpenOptions{}); !ins.Encrypted || !ins.ForUs || ins.Err != nil {
			t.Errorf("%s: Inspect %+v", name, ins)
		}
	}
	if KeyUnavailable.String() != "key-unavailable" {
		t.Errorf("String %q", KeyUnavailable.String())
	}
}

// TestOpenHeaderlessCiphertext: a message or part that is bare base64 or
// DER, without a header field before it, is looked at as a body.
func TestOpenHeaderlessCiphertext(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	der := envelopedDER(t, shapes["plain text"], rsa.Cert)
	want, _ := relayed(shapes["plain text"])
	for name, m := range map[string]string{
		"base64 message":  base64Lines(der),
		"binary message":  string(der),
		"base64 part":     mixed(base64Lines(der)),
		"headerless part": mixed("\r\n" + base64Lines(der)),
	} {
		r := Open([]byte(m), []cms.KeyPair{rsa}, OpenOptions{})
		switch {
		case strings.HasSuffix(name, "message"):
			if r.Outcome != Opened || string(r.Message) != want {
				t.Errorf("%s: %v, %v", name, r.Outcome, r.Err)
			}
		case r.Outcome != Failed || !strings.Contains(r.Err.Error(), "ciphertext encrypted to our certificate in part 1; not relayed"):
			t.Errorf("%s: %v, %v", name, r.Outcome, r.Err)
		}
	}
}
