package certstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// opensslCert makes a key and a self-signed domain certificate with
// `openssl req`, the way an operator would, and returns their paths.
func opensslCert(t *testing.T, dir, name, keyAlg, san, usage string) (crt, key string) {
	t.Helper()
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	run(t, nil, "openssl", "req", "-x509", "-newkey", keyAlg, "-nodes", "-keyout", key, "-out", crt,
		"-subj", "/CN="+name, "-days", "365",
		"-addext", "subjectAltName="+san, "-addext", "keyUsage="+usage)
	return crt, key
}

// TestPartnerFormatsFromOpenSSL: PEM with several certificates, DER, and
// PKCS#7 certs-only bundles (PEM and DER) from `openssl crl2pkcs7 -nocrl`.
func TestPartnerFormatsFromOpenSSL(t *testing.T) {
	t.Parallel()
	needTool(t, "openssl")
	work := t.TempDir()
	own, partners := testDirs(t)
	a, _ := opensslCert(t, work, "a", "rsa:2048", "email:smg_encryptor@a.example", "keyEncipherment")
	b, _ := opensslCert(t, work, "b", "ec:"+ecParamFile(t, work), "email:domain-confidentiality-authority@b.example,email:smg_encryptor@b2.example", "keyAgreement")
	c, _ := opensslCert(t, work, "c", "rsa:2048", "email:smg_encryptor@c.example", "keyEncipherment,digitalSignature")
	d, _ := opensslCert(t, work, "d", "rsa:2048", "email:smg_encryptor@d.example", "keyEncipherment")

	pemAB := append(readFileT(t, a), readFileT(t, b)...)
	writeFile(t, partners, "ab.pem", pemAB)
	run(t, nil, "openssl", "x509", "-in", c, "-outform", "DER", "-out", filepath.Join(partners, "c.cer"))
	run(t, nil, "openssl", "crl2pkcs7", "-nocrl", "-certfile", d, "-certfile", a, "-out", filepath.Join(partners, "d.p7b"))
	run(t, nil, "openssl", "crl2pkcs7", "-nocrl", "-certfile", c, "-outform", "DER", "-out", filepath.Join(partners, "c-der.p7c"))

	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Now: time.Now})
	if p := s.Problems(); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	for _, dom := range []string{"a.example", "b.example", "b2.example", "c.example", "d.example"} {
		if m := s.Lookup(dom); len(m.Certs) != 1 {
			t.Errorf("%s: %+v", dom, m)
		}
	}
	// a.example arrived twice (ab.pem and d.p7b) and c.example twice
	// (DER and PKCS#7): each is one recipient, not two.
	if n := len(s.All()); n != 4 {
		t.Errorf("%d certificates, want 4 after removing duplicates", n)
	}
}

func ecParamFile(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "p256.param")
	run(t, nil, "openssl", "ecparam", "-name", "prime256v1", "-out", p)
	return p
}

func readFileT(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOwnFormatsFromOpenSSL: own keys in every form OpenSSL writes them:
// PKCS#8, PKCS#1 (-traditional), SEC1 with EC PARAMETERS, encrypted PKCS#8
// (PBES2 with AES-256/SHA-256, 3DES, SHA-1 PRF) and PKCS#12 (OpenSSL 3's
// AES/PBKDF2 default), each paired with its certificate.
func TestOwnFormatsFromOpenSSL(t *testing.T) {
	t.Parallel()
	needTool(t, "openssl")
	work := t.TempDir()
	own, partners := testDirs(t)
	const pass = "correct horse battery staple"
	cert := func(name, alg, usage string) (string, string) {
		return opensslCert(t, work, name, alg, "email:smg_encryptor@"+name+".example", usage)
	}
	place := func(name, crt, key string) {
		writeFile(t, own, name+".crt", readFileT(t, crt))
		writeFile(t, own, name+".key", readFileT(t, key))
	}
	crt, key := cert("pkcs8", "rsa:2048", "keyEncipherment")
	place("pkcs8", crt, key)

	crt, key = cert("pkcs1", "rsa:2048", "keyEncipherment")
	writeFile(t, own, "pkcs1.crt", readFileT(t, crt))
	run(t, nil, "openssl", "rsa", "-in", key, "-traditional", "-out", filepath.Join(own, "pkcs1.key"))

	crt, _ = opensslCert(t, work, "sec1", "ec:"+ecParamFile(t, work), "email:smg_encryptor@sec1.example", "keyAgreement")
	writeFile(t, own, "sec1.crt", readFileT(t, crt))
	// `openssl ecparam -genkey` writes EC PARAMETERS before the key; the
	// key must match the certificate, so convert the req key instead.
	ecKey := filepath.Join(work, "sec1.key")
	sec1 := run(t, nil, "openssl", "ec", "-in", ecKey)
	params := run(t, nil, "openssl", "ecparam", "-name", "prime256v1")
	writeFile(t, own, "sec1.key", append(params, sec1...))

	for _, v := range []struct{ name, args string }{
		{"enc-aes", "-v2 aes256 -v2prf hmacWithSHA256"},
		{"enc-3des", "-v2 des3"},
		{"enc-sha1", "-v2 aes128 -v2prf hmacWithSHA1"},
	} {
		crt, key := cert(v.name, "rsa:2048", "keyEncipherment")
		writeFile(t, own, v.name+".crt", readFileT(t, crt))
		args := append([]string{"pkcs8", "-topk8", "-in", key, "-passout", "pass:" + pass, "-out", filepath.Join(own, v.name+".key")}, strings.Fields(v.args)...)
		run(t, nil, "openssl", args...)
	}

	crt, key = cert("p12", "rsa:2048", "keyEncipherment")
	run(t, nil, "openssl", "pkcs12", "-export", "-in", crt, "-inkey", key, "-passout", "pass:"+pass, "-out", filepath.Join(own, "p12.p12"))

	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass), Now: time.Now})
	if p := s.Problems(); len(p) != 0 {
		t.Fatalf("problems:\n%s", problemsText(s))
	}
	got := map[string]bool{}
	for _, c := range s.Own() {
		if c.Key == nil || !samePublicKey(publicKeyOf(c.Key), c.X509.PublicKey) {
			t.Errorf("%v: key does not match", c.Domains)
		}
		got[c.Domains[0]] = true
	}
	for _, n := range []string{"pkcs8", "pkcs1", "sec1", "enc-aes", "enc-3des", "enc-sha1", "p12"} {
		if !got[n+".example"] {
			t.Errorf("%s: not loaded", n)
		}
	}

	// Without the passphrase, and with a wrong one, the encrypted keys
	// are problems that say so, and the rest still loads.
	for _, tc := range []struct {
		pass, want string
	}{{"", "no passphrase is configured"}, {"wrong", "wrong passphrase"}} {
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(tc.pass), Now: time.Now})
		probs := problemsText(s)
		for _, f := range []string{"enc-aes.key", "enc-3des.key", "enc-sha1.key", "p12.p12"} {
			if !strings.Contains(probs, filepath.Join(own, f)+": ") || !strings.Contains(probs, tc.want) {
				t.Errorf("passphrase %q: no problem for %s saying %q:\n%s", tc.pass, f, tc.want, probs)
			}
		}
		// The certificates of the encrypted keys are still ours, without
		// a key, each naming its own key file and why it failed; the
		// PKCS#12 file hides its certificate too and is only a problem.
		keyed := 0
		for _, c := range s.Own() {
			if c.Key != nil {
				keyed++
			}
		}
		if keyed != 3 || len(s.Own()) != 6 {
			t.Errorf("passphrase %q: %d own certificates, %d with a key; want 6, the 3 unencrypted ones with their key", tc.pass, len(s.Own()), keyed)
		}
		without := s.OwnWithoutKey()
		if len(without) != 3 {
			t.Fatalf("passphrase %q: %d own certificates without a key, want 3", tc.pass, len(without))
		}
		for _, c := range without {
			keyFile := filepath.Join(own, strings.TrimSuffix(c.Domains[0], ".example")+".key")
			if c.Key != nil || c.Status != NoPrivateKey || !strings.HasPrefix(c.Reason, "no usable private key: "+keyFile+": ") ||
				!strings.Contains(c.Reason, tc.want) || strings.Count(c.Reason, own) != 1 {
				t.Errorf("passphrase %q: %v: status %s, reason %q; want no private key because of %s", tc.pass, c.Domains, c.Status, c.Reason, keyFile)
			}
		}
	}
}

// TestKeyFileModeWarning: a private key readable by others is reported.
func TestKeyFileModeWarning(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k := rsaKey(t, 5)
	p := writeFile(t, own, "o.pem", append(certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}})), keyPEM(t, k)...))
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if len(s.Own()) != 1 || !strings.Contains(problemsText(s), "readable by others (mode 0644)") {
		t.Errorf("own %d, problems:\n%s", len(s.Own()), problemsText(s))
	}
}

// TestPKCS12Integrity: a PKCS#12 file without an integrity MAC is refused
// before anything is decrypted (its iteration counts are unauthenticated);
// one with the minimal MAC iteration count still loads.
func TestPKCS12Integrity(t *testing.T) {
	t.Parallel()
	needTool(t, "openssl")
	work := t.TempDir()
	own, partners := testDirs(t)
	const pass = "pw"
	crt, key := opensslCert(t, work, "p12", "rsa:2048", "email:smg_encryptor@p12.example", "keyEncipherment")
	run(t, nil, "openssl", "pkcs12", "-export", "-in", crt, "-inkey", key, "-passout", "pass:"+pass, "-nomac", "-out", filepath.Join(own, "nomac.p12"))
	run(t, nil, "openssl", "pkcs12", "-export", "-in", crt, "-inkey", key, "-passout", "pass:"+pass, "-nomaciter", "-out", filepath.Join(own, "maciter1.pfx"))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass), Now: time.Now})
	probs := problemsText(s)
	if !strings.Contains(probs, "nomac.p12: PKCS#12: the file has no integrity MAC") {
		t.Errorf("problems:\n%s", probs)
	}
	if o := s.Own(); len(o) != 1 || filepath.Base(o[0].File) != "maciter1.pfx" {
		t.Errorf("own = %+v", o)
	}
}

// TestPartnerBERPKCS7: a PKCS#7 SignedData that a streaming encoder wrote
// in BER with indefinite lengths (`openssl cms -sign -stream`) yields its
// certificates, byte for byte.
func TestPartnerBERPKCS7(t *testing.T) {
	t.Parallel()
	needTool(t, "openssl")
	work := t.TempDir()
	own, partners := testDirs(t)
	partner, _ := opensslCert(t, work, "ber", "rsa:2048", "email:smg_encryptor@ber.example", "keyEncipherment")
	signer, signerKey := opensslCert(t, work, "signer", "rsa:2048", "email:someone@ber.example", "digitalSignature")
	p7 := filepath.Join(partners, "ber.p7b")
	run(t, []byte("x"), "openssl", "cms", "-sign", "-stream", "-outform", "DER", "-signer", signer, "-inkey", signerKey, "-certfile", partner, "-out", p7)
	data := readFileT(t, p7)
	if len(data) < 2 || data[1] != 0x80 {
		t.Fatalf("openssl wrote no indefinite length: % x", data[:4])
	}
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Now: time.Now})
	m := s.Lookup("ber.example")
	if len(m.Certs) != 1 || len(s.Problems()) != 0 {
		t.Fatalf("%+v\n%s", m, problemsText(s))
	}
	want := run(t, nil, "openssl", "x509", "-in", partner, "-outform", "DER")
	if string(m.Certs[0].X509.Raw) != string(want) {
		t.Error("the certificate changed in the BER to DER conversion")
	}
}
