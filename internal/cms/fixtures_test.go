package cms

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The test keys are committed fixtures under testdata/ (made once with
// openssl genpkey and openssl req -x509), so that no test generates an RSA
// key and the interop tests can hand the same files to openssl and gpgsm.
var fixtureNames = []string{"rsa", "rsa-other", "p256", "p384", "p521", "x25519"}

var (
	fixturesOnce sync.Once
	fixtures     map[string]KeyPair
	fixturesErr  error
)

func loadFixtures() {
	fixtures = map[string]KeyPair{}
	for _, name := range fixtureNames {
		kp, err := loadKeyPair(filepath.Join("testdata", name+".crt"), filepath.Join("testdata", name+".key"))
		if err != nil {
			fixturesErr = err
			return
		}
		fixtures[name] = kp
	}
}

func loadKeyPair(certFile, keyFile string) (KeyPair, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return KeyPair{}, err
	}
	cp, _ := pem.Decode(cb)
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return KeyPair{}, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return KeyPair{}, err
	}
	kpem, _ := pem.Decode(kb)
	key, err := x509.ParsePKCS8PrivateKey(kpem.Bytes)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// fixture returns the named key pair.
func fixture(tb testing.TB, name string) KeyPair {
	tb.Helper()
	fixturesOnce.Do(loadFixtures)
	if fixturesErr != nil {
		tb.Fatalf("loading test fixtures: %v", fixturesErr)
	}
	kp, ok := fixtures[name]
	if !ok {
		tb.Fatalf("no fixture %q", name)
	}
	return kp
}
