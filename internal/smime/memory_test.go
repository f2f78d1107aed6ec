package smime

import (
	"bytes"
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// allocated returns how many heap bytes f allocates. The memory tests do
// not call t.Parallel, so the parallel tests are paused while they run and
// the count is f's own.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestSealMemoryBound checks the bound stated in the package comment: with
// SealSpare bytes of spare capacity, Seal makes no copy of the message.
func TestSealMemoryBound(t *testing.T) {
	rsa := loadPair(t, "rsa")
	msg := largeMessage(t, 8<<20)
	for _, c := range []cms.ContentCipher{cms.AES256GCM, cms.AES256CBC} {
		n := allocated(func() {
			if err := Seal(io.Discard, msg, SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: c}); err != nil {
				t.Fatal(err)
			}
		})
		if n > uint64(len(msg)/8) {
			t.Errorf("%v: Seal allocated %d bytes for a %d-byte message: it copied the message", c, n, len(msg))
		}
	}
}

// TestOpenMemoryBound: Open allocates the decoded buffer (3/4 of the base64
// input) and, for a whole message, nothing more of that size.
func TestOpenMemoryBound(t *testing.T) {
	rsa := loadPair(t, "rsa")
	out := sealed(t, largeMessage(t, 8<<20), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	var r OpenResult
	n := allocated(func() { r = Open(out, []cms.KeyPair{rsa}, OpenOptions{}) })
	if r.Outcome != Opened {
		t.Fatalf("%v, %v", r.Outcome, r.Err)
	}
	if limit := uint64(len(out))/4*3 + 1<<20; n > limit {
		t.Errorf("Open allocated %d bytes for a %d-byte input, more than %d", n, len(out), limit)
	}
	// Over the limit: refused before anything of that size is allocated.
	n = allocated(func() { r = Open(out, []cms.KeyPair{rsa}, OpenOptions{MaxSize: int64(len(out) / 2)}) })
	if r.Outcome != Failed || n > 1<<20 {
		t.Errorf("over the limit: %v, %v, allocated %d bytes", r.Outcome, r.Err, n)
	}
}

// bombSize is the size of the plaintexts the memory bomb tests seal: 45 MB,
// the size at which the blank-separated base64 below once peaked at 919 MB.
const bombSize = 45 << 20

// TestOpenBlankBase64Bomb: a decrypted message/rfc822 entity whose base64
// has a blank between every two characters decodes into the buffer that
// holds the result and nothing more of its size. bytes.FieldsFunc made one
// slice header per character and allocated 20 times the input.
func TestOpenBlankBase64Bomb(t *testing.T) {
	rsa := loadPair(t, "rsa")
	inner := []byte(plainText(bombSize / 8 * 3))
	text := base64.StdEncoding.EncodeToString(inner)
	var pt bytes.Buffer
	pt.Grow(bombSize + 1<<20)
	pt.WriteString("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(text); i++ {
		pt.WriteByte(text[i])
		pt.WriteByte(' ')
		if i%lineChars == lineChars-1 {
			pt.WriteString("\r\n")
		}
	}
	pt.WriteString("\r\n")
	out := sealed(t, pt.Bytes(), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	var r OpenResult
	n := allocated(func() { r = Open(out, []cms.KeyPair{rsa}, OpenOptions{}) })
	if r.Outcome != Opened || !bytes.Equal(r.Message, inner) {
		t.Fatalf("%v, %v", r.Outcome, r.Err)
	}
	// The decoded CMS and the decoded entity, each at most 3/4 of its
	// text (decodeBase64 sizes its buffer before it knows how many of the
	// characters are blanks), and a megabyte of small change.
	if limit := uint64(len(out))/4*3 + uint64(pt.Len())/4*3 + 1<<20; n > limit {
		t.Errorf("Open allocated %d bytes for a %d-byte input, more than %d", n, len(out), limit)
	}
}

// TestOpenHeaderBomb: a header section of millions of tiny fields, in a
// decrypted plaintext or in a message that is not encrypted at all, is
// refused once past its bound, without parsing it field by field:
// textproto.ReadHeader allocated about 400 bytes per field (a 256-byte line
// buffer each), gigabytes for 45 MB.
func TestOpenHeaderBomb(t *testing.T) {
	rsa := loadPair(t, "rsa")
	var bomb bytes.Buffer
	bomb.Grow(bombSize + 1024)
	bomb.WriteString("From: alice@example.org\r\nTo: bob@example.net\r\n")
	for bomb.Len() < bombSize {
		bomb.WriteString("a:\r\n")
	}
	bomb.WriteString("\r\nbody\r\n")
	// Sealed by hand: what is measured is Open, and Seal reads the header
	// of what it encrypts too.
	var der, out bytes.Buffer
	if err := cms.Encrypt(&der, bytes.Clone(bomb.Bytes()), []cms.Recipient{{Cert: rsa.Cert}}, cms.EncryptOptions{}); err != nil {
		t.Fatal(err)
	}
	out.WriteString("Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := newLineEncoder(&out)
	enc.Write(der.Bytes())
	enc.Close()
	for _, c := range []struct {
		name string
		msg  []byte
		want string
		// limit is what Open may allocate: the decoded CMS for the
		// sealed one, small change for the other.
		limit uint64
	}{
		{"decrypted", out.Bytes(), "decrypted content: header section of", uint64(out.Len())/4*3 + 1<<20},
		{"not encrypted", bomb.Bytes(), "the message: header section of", 1 << 20},
	} {
		var r OpenResult
		n := allocated(func() { r = Open(c.msg, []cms.KeyPair{rsa}, OpenOptions{}) })
		if r.Outcome != Failed || !strings.Contains(r.Err.Error(), c.want) {
			t.Errorf("%s: %v, %v; want Failed saying %q", c.name, r.Outcome, r.Err, c.want)
		}
		if n > c.limit {
			t.Errorf("%s: Open allocated %d bytes for a %d-byte input, more than %d", c.name, n, len(c.msg), c.limit)
		}
	}
}
