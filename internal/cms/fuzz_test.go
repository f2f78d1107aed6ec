package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// walk visits every element below e, joining every OCTET STRING both ways
// and re-encoding as DER, as Decrypt does on the fields it reads.
func walk(t *testing.T, e element) {
	if e.is(classUniversal, tagOctetString) || e.is(classContext, 0) {
		copied, err1 := octets(e, false)
		if e.constructed {
			scratch := bytes.Clone(e.raw)
			se, _, err := parseElement(scratch, e.depth)
			if err != nil {
				t.Fatalf("re-parse of a parsed element failed: %v", err)
			}
			inPlace, err2 := octets(se, true)
			if (err1 == nil) != (err2 == nil) || (err1 == nil && !bytes.Equal(copied, inPlace)) {
				t.Fatalf("octets in place (%v) and copied (%v) disagree", err2, err1)
			}
		}
	}
	if der, err := toDER(e); err == nil {
		if _, rest, err := parseElement(der, 0); err != nil || len(rest) != 0 {
			t.Fatalf("toDER output does not parse: %v, %d bytes left", err, len(rest))
		}
	}
	if !e.constructed {
		_, _ = readOID(e)
		_, _ = readSmallInt(e, "fuzz")
		return
	}
	r, _ := e.children()
	for !r.empty() {
		c, err := r.next()
		if err != nil {
			return
		}
		walk(t, c)
	}
}

func FuzzParseBER(f *testing.F) {
	der := encryptTo(f, []byte("seed"), EncryptOptions{}, Recipient{Cert: fixture(f, "rsa").Cert})
	f.Add(der)
	f.Add(berify(f, der, 3))
	f.Add([]byte{0x24, 0x80, 0x24, 0x80, 0x04, 0x01, 0x41, 0, 0, 0x04, 0x00, 0, 0})
	f.Add([]byte{0x1f, 0x81, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newReader(b, 0)
		for !r.empty() {
			e, err := r.next()
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("parse error is not ErrMalformed: %v", err)
				}
				return
			}
			walk(t, e)
		}
	})
}

// FuzzDecrypt runs Decrypt with fixed keys on mutated messages of every
// kind we can write, and checks that it fails only with documented errors.
func FuzzDecrypt(f *testing.F) {
	keys := []KeyPair{fixture(f, "rsa"), fixture(f, "p256"), fixture(f, "x25519")}
	for _, c := range []ContentCipher{AES256GCM, AES128CBC} {
		for i, k := range keys {
			der := encryptTo(f, []byte("fuzz seed message"), EncryptOptions{Cipher: c}, Recipient{Cert: k.Cert, RSAPadding: RSAPadding(i % 2), UseSKI: i == 1})
			f.Add(der)
			f.Add(berify(f, der, 5))
		}
	}
	for _, s := range samples {
		f.Add(readSample(f, s.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Decrypt works in place; the fuzzer's input must stay intact.
		pt, info, err := Decrypt(bytes.Clone(b), keys, DecryptOptions{Allow3DES: true, MaxSize: 1 << 20})
		if err == nil {
			if info == nil || info.Cert == nil || pt == nil && len(b) == 0 {
				t.Fatalf("success without info: %+v", info)
			}
			return
		}
		var ue *UnsupportedAlgorithmError
		switch {
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrDecrypt), errors.Is(err, ErrNotForUs),
			errors.Is(err, ErrTooLarge), errors.Is(err, ErrKeyUnavailable), errors.As(err, &ue):
		default:
			t.Fatalf("undocumented error: %v", err)
		}
	})
}

// FuzzAddressed runs Addressed on the seeds of FuzzDecrypt and checks that
// it agrees with Decrypt on whether the message is for us, and fails only
// as Decrypt does on what does not parse.
func FuzzAddressed(f *testing.F) {
	keys := []KeyPair{fixture(f, "rsa"), fixture(f, "p256"), fixture(f, "x25519")}
	for _, c := range []ContentCipher{AES256GCM, AES128CBC} {
		for i, k := range keys {
			der := encryptTo(f, []byte("fuzz seed message"), EncryptOptions{Cipher: c}, Recipient{Cert: k.Cert, RSAPadding: RSAPadding(i % 2), UseSKI: i == 1})
			f.Add(der)
			f.Add(berify(f, der, 5))
		}
	}
	f.Add(encryptTo(f, nil, EncryptOptions{}, Recipient{Cert: fixture(f, "rsa-other").Cert}, Recipient{Cert: fixture(f, "p384").Cert}))
	for _, s := range samples {
		f.Add(readSample(f, s.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAddressedAgrees(t, b, keys, DecryptOptions{Allow3DES: true, MaxSize: 1 << 20})
	})
}

// FuzzRecipientInfos runs the RecipientInfos parser on a SET OF
// RecipientInfo and checks that it fails only with documented errors,
// never keeps more than MaxRecipientInfos entries or RecipientEncryptedKeys,
// and that matching and describing what it read are safe.
func FuzzRecipientInfos(f *testing.F) {
	var all []Recipient
	for i, name := range fixtureNames {
		all = append(all, Recipient{Cert: fixture(f, name).Cert, RSAPadding: RSAPadding(i % 2), UseSKI: i%3 == 0})
	}
	for i := range all {
		ris, _, err := recipientInfos(all[i:], randomBytes(32))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ris)
		f.Add(berify(f, ris, 7))
	}
	set := func(body []byte) []byte {
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(body) })
		return b.BytesOrPanic()
	}
	f.Add(set(bytes.Repeat([]byte{0xa2, 0x00}, MaxRecipientInfos+1)))
	f.Add(set(bytes.Repeat(tinyKTRI(7), MaxRecipientInfos)))
	f.Add(set(kari(bytes.Repeat(tinyREK(), MaxRecipientInfos-1))))
	certs := []*x509.Certificate{fixture(f, "rsa").Cert, fixture(f, "p256").Cert, fixture(f, "x25519").Cert}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, _, err := parseElement(b, 3)
		if err != nil || !e.is(classUniversal, tagSet) {
			return
		}
		env := &envelope{}
		if err := env.readRecipientInfos(e); err != nil {
			var ue *UnsupportedAlgorithmError
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &ue) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if n := len(env.keyTrans) + len(env.keyAgree) + len(env.kem) + env.otherKinds; n == 0 || n > MaxRecipientInfos {
			t.Fatalf("%d RecipientInfos read (limit %d)", n, MaxRecipientInfos)
		}
		keys := 0
		for _, ka := range env.keyAgree {
			keys += len(ka.keys)
		}
		if keys != env.encryptedKeys || keys > MaxRecipientInfos {
			t.Fatalf("%d RecipientEncryptedKeys read, %d counted (limit %d)", keys, env.encryptedKeys, MaxRecipientInfos)
		}
		for _, c := range certs {
			env.firstMatch(c)
		}
		_ = env.describeRecipients()
	})
}
