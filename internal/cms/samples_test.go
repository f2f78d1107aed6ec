package cms

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// testdata/seeds holds messages that real peers wrote to the fixture
// certificates (openssl cms 3.0 and gpgsm 2.2, commands in the report that
// added them). They are both the fuzzer's starting points and a fixed
// interop record that needs no peer installed.
var samplePlain = []byte("Subject: seed\r\n\r\nfuzz seed from a real peer\r\n")

var samples = []struct {
	file, transport, cipher string
}{
	{"openssl-stream-oaep-gcm.der", "rsa-oaep-sha256", "aes256-gcm"},
	{"openssl-keyid-ecdh-sha1kdf-cbc.der", "ecdh-p256-sha1kdf", "aes128-cbc"},
	{"openssl-stream-3des.der", "rsa-pkcs1v15", "des-ede3-cbc"},
	{"gpgsm-rsa-aes128cbc.der", "rsa-pkcs1v15", "aes128-cbc"},
}

func readSample(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seeds", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestPeerSamples(t *testing.T) {
	t.Parallel()
	keys := []KeyPair{fixture(t, "rsa"), fixture(t, "p256")}
	for _, s := range samples {
		got, info, err := Decrypt(readSample(t, s.file), keys, DecryptOptions{Allow3DES: true})
		if err != nil || !bytes.Equal(got, samplePlain) {
			t.Fatalf("%s: %q, %v", s.file, got, err)
		}
		if info.KeyTransport != s.transport || info.Cipher != s.cipher {
			t.Fatalf("%s: info = %+v", s.file, info)
		}
	}
}
