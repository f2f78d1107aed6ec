package smime

import (
	"io"
	"runtime"
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
