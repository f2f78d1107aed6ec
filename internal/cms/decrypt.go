package cms

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// candidate is a RecipientInfo that names one of our certificates, with the
// key to open it.
type candidate struct {
	key      KeyPair
	keyTrans *keyTransInfo
	keyAgree *keyAgreeInfo
	kem      *kemRecipientInfo
	ref      keyRef
}

// Decrypt parses a BER or DER ContentInfo holding EnvelopedData or
// AuthEnvelopedData and returns the plaintext, decrypted with whichever of
// keys the message names. The plaintext may alias input, and input is
// overwritten either way.
//
// A KeyPair whose Key is nil stands for a certificate of ours whose private
// key is not available (an unreadable key file, a wrong passphrase). When
// the message names such a certificate and no key pair with a key opens
// it, Decrypt returns an error wrapping ErrKeyUnavailable rather than
// ErrNotForUs or ErrDecrypt, so that the message waits for the key instead
// of passing on still encrypted or being taken for corrupt.
//
// Errors: ErrNotForUs when no RecipientInfo names one of keys'
// certificates; ErrKeyUnavailable as above; ErrDecrypt (always the same
// value, whatever went wrong in key transport, key encapsulation or
// content decryption); ErrMalformed (for a KEMRecipientInfo also a
// kekLength that does not fit its wrap, or a kemct of the wrong length);
// ErrTooLarge; or an *UnsupportedAlgorithmError naming the refused
// algorithm (for a KEMRecipientInfo: its KEM, KDF or key wrap).
func Decrypt(input []byte, keys []KeyPair, opts DecryptOptions) ([]byte, *Info, error) {
	if opts.MaxSize > 0 && int64(len(input)) > opts.MaxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(input), opts.MaxSize)
	}
	env, err := parseContentInfo(input)
	if err != nil {
		return nil, nil, err
	}
	cands, keyless := env.match(keys)
	if len(cands) == 0 && len(keyless) == 0 {
		return nil, nil, fmt.Errorf("%w: it is for %s", ErrNotForUs, env.describeRecipients())
	}
	alg, iv, err := env.checkContentAlg(opts)
	if err != nil {
		return nil, nil, err
	}
	if !env.hasContent {
		return nil, nil, malformed("encryptedContent is absent (detached content is not supported)")
	}
	// The ciphertext length is public: check it before any private-key work.
	ctLen, err := segmentsLen(env.content)
	if err != nil {
		return nil, nil, err
	}
	if !alg.aead && (ctLen == 0 || ctLen%blockSize(alg) != 0) {
		return nil, nil, malformed("%s ciphertext of %d bytes is not a whole number of blocks", alg.name, ctLen)
	}

	// Unwrap the content-encryption key for every candidate. None of these
	// steps reports a cryptographic failure; a failed one yields a key that
	// does not open the content: for RSA one derived from the ciphertext
	// (see rsaKeyTransport.unwrap), for ECDH a random one.
	type attempt struct {
		cek  []byte
		info Info
	}
	var attempts []attempt
	var mismatch []string
	for _, c := range cands {
		cek, transport, err := c.unwrap(alg.keyLen)
		if err != nil {
			var ue *UnsupportedAlgorithmError
			if errors.As(err, &ue) || errors.Is(err, ErrMalformed) {
				return nil, nil, err
			}
			mismatch = append(mismatch, err.Error())
			continue
		}
		attempts = append(attempts, attempt{cek: cek, info: Info{
			ContentType:  env.typeName(),
			Cipher:       alg.name,
			AEAD:         alg.aead,
			KeyTransport: transport,
			Cert:         c.key.Cert,
		}})
	}
	if len(attempts) == 0 {
		if len(keyless) > 0 {
			return nil, nil, keyUnavailable(keyless)
		}
		return nil, nil, fmt.Errorf("%w: %s", ErrDecrypt, strings.Join(mismatch, "; "))
	}
	defer func() {
		for _, a := range attempts {
			clear(a.cek)
		}
	}()

	ct, err := octets(env.content, true)
	if err != nil {
		return nil, nil, err
	}
	dec := decryptCBC
	var aad []byte
	if alg.aead {
		if aad, err = env.additionalData(); err != nil {
			return nil, nil, err
		}
		dec = func(alg *contentAlg, key, iv, ct []byte, inPlace bool) ([]byte, bool) {
			return openGCM(alg, key, iv, ct, env.mac, aad, inPlace)
		}
	}
	// Every attempt but the last works on a copy, because a failed one
	// destroys the ciphertext it decrypts in place.
	for i, a := range attempts {
		last := i == len(attempts)-1
		if pt, ok := dec(alg, a.cek, iv, ct, last); ok {
			info := a.info
			return pt, &info, nil
		}
	}
	if len(keyless) > 0 {
		// The message may be for a key we cannot use now rather than
		// broken: it must wait for that key, not be treated as corrupt.
		return nil, nil, keyUnavailable(keyless)
	}
	return nil, nil, ErrDecrypt
}

// match lists the (RecipientInfo, key) pairs whose identifier names the
// key's certificate (RFC 5652 section 6.2). Each key takes only the first
// RecipientInfo that names it: an honest sender names a certificate once,
// and an attacker who repeats it must not buy one private-key operation
// and one content decryption per copy. The certificates of keys without a
// private key that the message names are returned apart, in keyless.
func (env *envelope) match(keys []KeyPair) (cands []candidate, keyless []*x509.Certificate) {
	for _, k := range keys {
		if k.Cert == nil {
			continue
		}
		c, ok := env.firstMatch(k.Cert)
		switch {
		case !ok:
		case k.Key == nil:
			keyless = append(keyless, k.Cert)
		default:
			c.key = k
			cands = append(cands, c)
		}
	}
	return cands, keyless
}

// firstMatch finds the first RecipientInfo or RecipientEncryptedKey that
// names cert. Decrypt and Addressed both match through it, so that they
// agree on which messages are for us.
func (env *envelope) firstMatch(cert *x509.Certificate) (candidate, bool) {
	for i := range env.keyTrans {
		kt := &env.keyTrans[i]
		if kt.ref.rid.matches(cert) {
			return candidate{keyTrans: kt, ref: kt.ref}, true
		}
	}
	for _, ka := range env.keyAgree {
		for _, ref := range ka.keys {
			if ref.rid.matches(cert) {
				return candidate{keyAgree: ka, ref: ref}, true
			}
		}
	}
	for _, ki := range env.kem {
		if ki.ref.rid.matches(cert) {
			return candidate{kem: ki, ref: ki.ref}, true
		}
	}
	return candidate{}, false
}

// keyUnavailable is the error for a message that names certificates of
// ours whose private keys are missing. It names them by subject and serial
// number, which are public.
func keyUnavailable(certs []*x509.Certificate) error {
	names := make([]string, len(certs))
	for i, c := range certs {
		serial := "?"
		if c.SerialNumber != nil {
			serial = c.SerialNumber.Text(16)
		}
		names[i] = fmt.Sprintf("certificate %q serial %s", c.Subject.String(), serial)
	}
	return fmt.Errorf("%w: %s", ErrKeyUnavailable, strings.Join(names, "; "))
}

// Addressed reports whether input, a BER or DER ContentInfo holding
// EnvelopedData or AuthEnvelopedData, has a RecipientInfo that names one of
// certs. It parses input with every bound that Decrypt applies, matches
// recipients exactly as Decrypt does, and does nothing else: no private-key
// operation and no content decryption, so that its cost and its answer
// depend only on what the message shows anyone. It does not modify input.
//
// Errors are those that Decrypt returns before matching: ErrTooLarge for
// input longer than opts.MaxSize, ErrMalformed for what is not such a
// ContentInfo or exceeds a bound (MaxRecipientInfos among them), and an
// *UnsupportedAlgorithmError for a key-agreement scheme or key wrap that
// the parser does not know. For the
// same input, Addressed(input, certs) is (false, nil) exactly when Decrypt
// with key pairs for certs returns ErrNotForUs.
func Addressed(input []byte, certs []*x509.Certificate, opts DecryptOptions) (forUs bool, err error) {
	if opts.MaxSize > 0 && int64(len(input)) > opts.MaxSize {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(input), opts.MaxSize)
	}
	env, err := parseContentInfo(input)
	if err != nil {
		return false, err
	}
	for _, c := range certs {
		if c == nil {
			continue
		}
		if _, ok := env.firstMatch(c); ok {
			return true, nil
		}
	}
	return false, nil
}

// describeRecipients names the recipients of a message that is not for us,
// so that the log says who it was for; it reveals only what the message
// shows anyone.
func (env *envelope) describeRecipients() string {
	const maxListed = 8 // a message may name hundreds of recipients
	var ids []string
	more := 0
	add := func(id recipientID) {
		if len(ids) < maxListed {
			ids = append(ids, id.String())
		} else {
			more++
		}
	}
	for _, kt := range env.keyTrans {
		add(kt.ref.rid)
	}
	for _, ka := range env.keyAgree {
		for _, ref := range ka.keys {
			add(ref.rid)
		}
	}
	for _, ki := range env.kem {
		add(ki.ref.rid)
	}
	if more > 0 {
		ids = append(ids, fmt.Sprintf("%d more", more))
	}
	if env.otherKinds > 0 {
		ids = append(ids, fmt.Sprintf("%d recipient(s) by symmetric key, password or other method", env.otherKinds))
	}
	return strings.Join(ids, ", ")
}

func (env *envelope) typeName() string {
	if env.auth {
		return "authEnvelopedData"
	}
	return "envelopedData"
}

// unwrap recovers the content-encryption key for c. Its error reports only
// facts visible without any key: an unsupported algorithm, or a key whose
// type does not fit the RecipientInfo.
func (c candidate) unwrap(keyLen int) ([]byte, string, error) {
	if c.kem != nil {
		priv, ok := c.key.Key.(*KEMPrivateKey)
		if !ok {
			return nil, "", fmt.Errorf("certificate %q is named in a KEMRecipientInfo but its key is a %T", c.key.Cert.Subject, c.key.Key)
		}
		return c.kem.unwrap(priv, keyLen)
	}
	if c.keyTrans != nil {
		priv, ok := c.key.Key.(*rsa.PrivateKey)
		if !ok {
			return nil, "", fmt.Errorf("certificate %q is named in a key-transport RecipientInfo but its key is a %T", c.key.Cert.Subject, c.key.Key)
		}
		kt, err := readRSAKeyTransport(c.keyTrans.alg)
		if err != nil {
			return nil, "", err
		}
		return kt.unwrap(priv, c.ref.encKey, keyLen), kt.name, nil
	}
	var priv *ecdh.PrivateKey
	switch k := c.key.Key.(type) {
	case *ecdh.PrivateKey:
		priv = k
	case *ecdsa.PrivateKey:
		var err error
		if priv, err = k.ECDH(); err != nil {
			return nil, "", fmt.Errorf("certificate %q: %v", c.key.Cert.Subject, err)
		}
	default:
		return nil, "", fmt.Errorf("certificate %q is named in a key-agreement RecipientInfo but its key is a %T", c.key.Cert.Subject, c.key.Key)
	}
	return c.keyAgree.unwrap(priv, c.ref, keyLen), c.keyAgree.transportName(priv.Curve()), nil
}

// checkContentAlg resolves the content-encryption algorithm and its IV or
// nonce, refusing what policy forbids.
func (env *envelope) checkContentAlg(opts DecryptOptions) (*contentAlg, []byte, error) {
	a := env.contentAlg
	var alg *contentAlg
	for _, c := range decryptAlgs {
		if c.oid.Equal(a.oid) {
			alg = c
		}
	}
	switch {
	case alg == nil:
		return nil, nil, &UnsupportedAlgorithmError{OID: a.oid, Where: "content encryption"}
	case env.auth && !alg.aead:
		// RFC 5083 section 2.1 requires an authenticated algorithm; a CBC
		// OID here is the AEAD-downgrade attack (CVE-2026-34182).
		return nil, nil, &UnsupportedAlgorithmError{OID: a.oid, Where: "authEnvelopedData content encryption (only AES-GCM is accepted)"}
	case !env.auth && alg.aead:
		return nil, nil, &UnsupportedAlgorithmError{OID: a.oid, Where: "envelopedData content encryption (AES-GCM belongs in authEnvelopedData)"}
	case alg.legacy && !opts.Allow3DES:
		return nil, nil, &UnsupportedAlgorithmError{OID: a.oid, Where: "content encryption (3DES is off; see DecryptOptions.Allow3DES)"}
	}
	if !a.hasParams {
		return nil, nil, malformed("%s without parameters", alg.name)
	}
	if !alg.aead {
		// RFC 3565 section 4.1, RFC 3370 section 5.1: the IV.
		if !a.params.is(classUniversal, tagOctetString) {
			return nil, nil, malformed("%s IV is not an OCTET STRING", alg.name)
		}
		iv, err := octets(a.params, false)
		if err != nil {
			return nil, nil, err
		}
		if len(iv) != alg.ivLen() {
			return nil, nil, malformed("%s IV of %d bytes (want %d)", alg.name, len(iv), alg.ivLen())
		}
		return alg, iv, nil
	}
	nonce, err := readGCMParams(alg, a.params)
	if err != nil {
		return nil, nil, err
	}
	if len(env.mac) != gcmTagSize {
		return nil, nil, malformed("mac of %d bytes (want %d)", len(env.mac), gcmTagSize)
	}
	return alg, nonce, nil
}

// readGCMParams decodes GCMParameters (RFC 5084 section 3.2) and accepts
// only a 12-byte nonce and a 16-byte tag. aes-ICVlen defaults to 12, so a
// missing one is refused too.
func readGCMParams(alg *contentAlg, p element) ([]byte, error) {
	if !p.is(classUniversal, tagSequence) || !p.constructed {
		return nil, malformed("GCMParameters is not a SEQUENCE")
	}
	r, _ := p.children()
	ne, err := r.nextIs(classUniversal, tagOctetString, "aes-nonce")
	if err != nil {
		return nil, err
	}
	nonce, err := octets(ne, false)
	if err != nil {
		return nil, err
	}
	icvLen := 12
	if ie, ok, err := r.optional(classUniversal, tagInteger); err != nil {
		return nil, err
	} else if ok {
		if icvLen, err = readSmallInt(ie, "aes-ICVlen"); err != nil {
			return nil, err
		}
	}
	if !r.empty() {
		return nil, malformed("trailing data in GCMParameters")
	}
	if icvLen != gcmTagSize {
		return nil, &UnsupportedAlgorithmError{OID: alg.oid, Where: fmt.Sprintf("authEnvelopedData: a %d-byte tag (only %d is accepted)", icvLen, gcmTagSize)}
	}
	if len(nonce) != gcmNonceSize {
		return nil, &UnsupportedAlgorithmError{OID: alg.oid, Where: fmt.Sprintf("authEnvelopedData: a %d-byte nonce (only %d is accepted)", len(nonce), gcmNonceSize)}
	}
	return nonce, nil
}

// additionalData returns the GCM additional data: the DER of authAttrs with
// a SET OF tag in place of the [1] IMPLICIT tag (RFC 5083 section 2.2), or
// nothing when there are no authenticated attributes.
func (env *envelope) additionalData() ([]byte, error) {
	if !env.hasAuthAttrs {
		return nil, nil
	}
	if !env.authAttrs.constructed {
		return nil, malformed("authAttrs is not constructed")
	}
	der, err := toDER(env.authAttrs) // a fresh buffer: authAttrs is constructed
	if err != nil {
		return nil, err
	}
	der[0] = 0x31
	return der, nil
}

func blockSize(alg *contentAlg) int {
	if alg.legacy {
		return 8
	}
	return 16
}

// openGCM authenticates and decrypts ct with the tag mac. In place, the
// tag is moved to right after the ciphertext (over the mac's own DER
// header, which follows it in the input) so that Open reads one buffer.
func openGCM(alg *contentAlg, key, nonce, ct, mac, aad []byte, inPlace bool) ([]byte, bool) {
	block, err := alg.block(key)
	if err != nil {
		return nil, false
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, false
	}
	var tag [gcmTagSize]byte
	copy(tag[:], mac)
	var nonceCopy [gcmNonceSize]byte
	copy(nonceCopy[:], nonce)
	var buf []byte
	if inPlace && cap(ct)-len(ct) >= gcmTagSize {
		buf = ct[:len(ct)+gcmTagSize]
	} else {
		buf = make([]byte, len(ct)+gcmTagSize)
		copy(buf, ct)
	}
	copy(buf[len(ct):], tag[:])
	pt, err := aead.Open(buf[:0], nonceCopy[:], buf, aad)
	if err != nil {
		return nil, false
	}
	return pt, true
}

// decryptCBC decrypts ct and removes the padding of RFC 5652 section 6.3,
// checking it in constant time so that the time taken does not reveal
// where the padding went wrong.
func decryptCBC(alg *contentAlg, key, iv, ct []byte, inPlace bool) ([]byte, bool) {
	block, err := alg.block(key)
	if err != nil {
		return nil, false
	}
	buf := ct
	if !inPlace {
		buf = make([]byte, len(ct))
	}
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(buf, ct)
	bs := block.BlockSize()
	n := len(buf)
	pad := int(buf[n-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	for i := 0; i < bs; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i+1, pad)
		same := subtle.ConstantTimeByteEq(buf[n-1-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	if good != 1 {
		return nil, false
	}
	return buf[:n-pad], true
}
