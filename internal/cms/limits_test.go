package cms

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tinyKTRI is a KeyTransRecipientInfo of 39 bytes that names no one of ours
// by an empty issuer name and serial n, the brick of the memory bomb.
func tinyKTRI(n int64) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {})
			b.AddASN1Int64(n)
		})
		addAlgID(b, oidRSAEncryption, nil)
		b.AddASN1OctetString(make([]byte, 12))
	})
	return b.BytesOrPanic()
}

// tinyREK is a RecipientEncryptedKey that names no one of ours.
func tinyREK() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {})
			b.AddASN1Int64(1)
		})
		b.AddASN1OctetString(make([]byte, 24))
	})
	return b.BytesOrPanic()
}

// kari is a KeyAgreeRecipientInfo around the given RecipientEncryptedKeys.
func kari(reks []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				addAlgID(b, oidECPublicKey, nil)
				b.AddASN1BitString(append([]byte{4}, make([]byte, 64)...))
			})
		})
		addAlgID(b, oidECDHSHA256KDF, func(b *cryptobyte.Builder) { addAlgID(b, oidAES128Wrap, nil) })
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(reks) })
	})
	return b.BytesOrPanic()
}

// withRecipientInfos is a CBC message whose RecipientInfos are body.
func withRecipientInfos(body []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(body) })
	return handMade{ris: b.BytesOrPanic(), alg: cbcAlg(oidAES128CBC, make([]byte, 16)), ct: make([]byte, 16)}.der()
}

// TestRecipientInfoBomb: 1.2 million tiny RecipientInfos in 47 MB are
// refused by count, and refusing them costs a small fraction of the input
// in allocations (before the bound they took 1.5 GB). Not parallel: it
// measures the process's allocations.
func TestRecipientInfoBomb(t *testing.T) {
	msg := withRecipientInfos(bytes.Repeat(tinyKTRI(1), 1_200_000))
	if len(msg) < 46_000_000 {
		t.Fatalf("the bomb is only %d bytes", len(msg))
	}
	check := func(what string, call func() error) {
		t.Helper()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := call()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "RecipientInfo #1001: more than 1000 RecipientInfos") {
			t.Errorf("%s: err = %.200v, want ErrMalformed naming #1001 and the limit 1000", what, err)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		if limit := uint64(len(msg)) / 8; alloc > limit {
			t.Errorf("%s allocated %d bytes for a %d-byte input (limit %d)", what, alloc, len(msg), limit)
		}
		t.Logf("%s: %d bytes allocated for a %d-byte input", what, alloc, len(msg))
	}
	check("Decrypt", func() error {
		_, _, err := Decrypt(msg, rsaKeys(t), DecryptOptions{})
		return err
	})
	check("Addressed", func() error {
		_, err := Addressed(msg, certsOf(rsaKeys(t)), DecryptOptions{})
		return err
	})
}

// TestEncryptedKeyBomb: the RecipientEncryptedKeys of key agreement are
// bounded too, in one KeyAgreeRecipientInfo and across many.
func TestEncryptedKeyBomb(t *testing.T) {
	t.Parallel()
	one := withRecipientInfos(kari(bytes.Repeat(tinyREK(), 1_200_000)))
	spread := withRecipientInfos(bytes.Repeat(kari(bytes.Repeat(tinyREK(), 2)), 501))
	for what, msg := range map[string][]byte{"one KeyAgreeRecipientInfo": one, "501 of them": spread} {
		_, _, err := Decrypt(msg, rsaKeys(t), DecryptOptions{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "RecipientEncryptedKey #1001: more than 1000 RecipientEncryptedKeys") {
			t.Fatalf("%s: err = %v, want ErrMalformed naming #1001 and the limit", what, err)
		}
	}
}

// TestRecipientLimitsAtTheBound: exactly MaxRecipientInfos RecipientInfos,
// or RecipientEncryptedKeys, are read; one more is refused.
func TestRecipientLimitsAtTheBound(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	var real handMade
	real, _ = gcmMessage(t, []byte("the last of a thousand"), 16)
	var realRI cryptobyte.String // the one KeyTransRecipientInfo, without its SET header
	if s := cryptobyte.String(real.ris); !s.ReadASN1(&realRI, casn1.SET) {
		t.Fatal("the real RecipientInfos do not parse")
	}
	var dummies []byte
	for i := range MaxRecipientInfos - 1 {
		dummies = append(dummies, tinyKTRI(int64(i))...)
	}
	for _, c := range []struct {
		extra int
		want  string
	}{{0, ""}, {1, fmt.Sprintf("more than %d RecipientInfos", MaxRecipientInfos)}} {
		body := append(bytes.Clone(dummies), bytes.Repeat(tinyKTRI(-1), c.extra)...)
		body = append(body, realRI...)
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(body) })
		h := real
		h.ris = b.BytesOrPanic()
		h.ct = bytes.Clone(real.ct)
		got, _, err := Decrypt(h.der(), []KeyPair{kp}, DecryptOptions{})
		if c.want == "" {
			if err != nil || string(got) != "the last of a thousand" {
				t.Fatalf("%d RecipientInfos: %q, %v", MaxRecipientInfos, got, err)
			}
		} else if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%d RecipientInfos: err = %v, want %q", MaxRecipientInfos+c.extra, err, c.want)
		}
	}
	// 500 KeyAgreeRecipientInfos of 2 keys each: 1000 keys, read (and not
	// for us); one more key in the last one is refused.
	pair := kari(bytes.Repeat(tinyREK(), 2))
	atBound := withRecipientInfos(bytes.Repeat(pair, 500))
	if _, _, err := Decrypt(atBound, []KeyPair{kp}, DecryptOptions{}); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("1000 RecipientEncryptedKeys: err = %v, want ErrNotForUs", err)
	}
	over := withRecipientInfos(append(bytes.Repeat(pair, 499), kari(bytes.Repeat(tinyREK(), 3))...))
	if _, _, err := Decrypt(over, []KeyPair{kp}, DecryptOptions{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "RecipientEncryptedKey #1001") {
		t.Fatalf("1001 RecipientEncryptedKeys: err = %v", err)
	}
}

// TestNotForUsListsFew: the error for a message to a thousand others names
// a few and counts the rest.
func TestNotForUsListsFew(t *testing.T) {
	t.Parallel()
	var body []byte
	for i := range MaxRecipientInfos {
		body = append(body, tinyKTRI(int64(i))...)
	}
	_, _, err := Decrypt(withRecipientInfos(body), rsaKeys(t), DecryptOptions{})
	if !errors.Is(err, ErrNotForUs) || !strings.HasSuffix(err.Error(), fmt.Sprintf("%d more", MaxRecipientInfos-8)) || strings.Count(err.Error(), "serial") != 8 {
		t.Fatalf("err = %v", err)
	}
}
