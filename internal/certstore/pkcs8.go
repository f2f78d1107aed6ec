package certstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"

	"smimegate/internal/cms"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Encrypted PKCS#8 (RFC 5958 section 3) with PBES2 (RFC 8018 section 6.2),
// which is what `openssl pkcs8 -topk8` and `openssl genpkey -aes256` write.
// Go's standard library reads only unencrypted PKCS#8.

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}

	oidHMACWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
)

// maxPBKDF2Iterations bounds the work a key file can demand. OpenSSL writes
// 2048, current advice is some 600,000; ten million is far beyond both and
// still ends within seconds.
const maxPBKDF2Iterations = 10_000_000

// keygenPBKDF2Iterations is what smimegate writes (OWASP 2023 advice for
// PBKDF2-HMAC-SHA256).
const keygenPBKDF2Iterations = 600_000

// errWrongPassphrase is returned when the decrypted key does not parse:
// either the passphrase is wrong or the file is damaged, and PBES2 cannot
// tell the two apart.
var errWrongPassphrase = errors.New("wrong passphrase or damaged key")

// pbes2Params is a parsed PBES2 EncryptedPrivateKeyInfo.
type pbes2Params struct {
	salt       []byte
	iterations int
	keyLength  int // 0 if absent
	prf        func() hash.Hash
	cipher     asn1.ObjectIdentifier
	iv         []byte
	ciphertext []byte
}

// parseEncryptedPKCS8 parses EncryptedPrivateKeyInfo (RFC 5958 section 3)
// with PBES2 parameters (RFC 8018 appendix A.4) without deriving any key.
func parseEncryptedPKCS8(der []byte) (*pbes2Params, error) {
	var p pbes2Params
	in := cryptobyte.String(der)
	var epki, alg, params, kdf, kdfParams, enc cryptobyte.String
	var algOID, kdfOID asn1.ObjectIdentifier
	if !in.ReadASN1(&epki, cbasn1.SEQUENCE) || !in.Empty() ||
		!epki.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&algOID) {
		return nil, errors.New("malformed EncryptedPrivateKeyInfo")
	}
	if !algOID.Equal(oidPBES2) {
		return nil, fmt.Errorf("key encrypted with %s; only PBES2 is supported (convert with `openssl pkcs8 -topk8 -v2 aes256`)", algOID)
	}
	if !alg.ReadASN1(&params, cbasn1.SEQUENCE) || !alg.Empty() ||
		!epki.ReadASN1Bytes(&p.ciphertext, cbasn1.OCTET_STRING) || !epki.Empty() ||
		!params.ReadASN1(&kdf, cbasn1.SEQUENCE) ||
		!params.ReadASN1(&enc, cbasn1.SEQUENCE) || !params.Empty() ||
		!kdf.ReadASN1ObjectIdentifier(&kdfOID) {
		return nil, errors.New("malformed PBES2 parameters")
	}
	if !kdfOID.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("key derivation %s is not supported (only PBKDF2)", kdfOID)
	}
	if !kdf.ReadASN1(&kdfParams, cbasn1.SEQUENCE) || !kdf.Empty() ||
		!kdfParams.ReadASN1Bytes(&p.salt, cbasn1.OCTET_STRING) ||
		!kdfParams.ReadASN1Integer(&p.iterations) {
		return nil, errors.New("malformed PBKDF2 parameters")
	}
	if p.iterations < 1 || p.iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("PBKDF2 iteration count %d is outside 1 to %d", p.iterations, maxPBKDF2Iterations)
	}
	if kdfParams.PeekASN1Tag(cbasn1.INTEGER) && !kdfParams.ReadASN1Integer(&p.keyLength) {
		return nil, errors.New("malformed PBKDF2 key length")
	}
	p.prf = sha1.New // RFC 8018 appendix A.2: the default PRF
	if !kdfParams.Empty() {
		var prf cryptobyte.String
		var prfOID asn1.ObjectIdentifier
		if !kdfParams.ReadASN1(&prf, cbasn1.SEQUENCE) || !kdfParams.Empty() || !prf.ReadASN1ObjectIdentifier(&prfOID) {
			return nil, errors.New("malformed PBKDF2 PRF")
		}
		switch {
		case prfOID.Equal(oidHMACWithSHA1):
			p.prf = sha1.New
		case prfOID.Equal(oidHMACWithSHA224):
			p.prf = sha256.New224
		case prfOID.Equal(oidHMACWithSHA256):
			p.prf = sha256.New
		case prfOID.Equal(oidHMACWithSHA384):
			p.prf = sha512.New384
		case prfOID.Equal(oidHMACWithSHA512):
			p.prf = sha512.New
		default:
			return nil, fmt.Errorf("PBKDF2 PRF %s is not supported", prfOID)
		}
	}
	if !enc.ReadASN1ObjectIdentifier(&p.cipher) || !enc.ReadASN1Bytes(&p.iv, cbasn1.OCTET_STRING) || !enc.Empty() {
		return nil, errors.New("malformed PBES2 encryption scheme")
	}
	keyLen, blockSize := cipherSizes(p.cipher)
	if keyLen == 0 {
		return nil, fmt.Errorf("key encryption cipher %s is not supported (AES-CBC or DES-EDE3-CBC)", p.cipher)
	}
	if p.keyLength != 0 && p.keyLength != keyLen {
		return nil, fmt.Errorf("PBKDF2 key length %d does not fit the cipher", p.keyLength)
	}
	if len(p.iv) != blockSize {
		return nil, fmt.Errorf("IV of %d bytes, the cipher needs %d", len(p.iv), blockSize)
	}
	if len(p.ciphertext) == 0 || len(p.ciphertext)%blockSize != 0 {
		return nil, errors.New("encrypted key is not a whole number of cipher blocks")
	}
	return &p, nil
}

// cipherSizes returns the key and block length of a PBES2 cipher, 0 if unknown.
func cipherSizes(oid asn1.ObjectIdentifier) (keyLen, blockSize int) {
	switch {
	case oid.Equal(cms.OIDAES128CBC):
		return 16, aes.BlockSize
	case oid.Equal(cms.OIDAES192CBC):
		return 24, aes.BlockSize
	case oid.Equal(cms.OIDAES256CBC):
		return 32, aes.BlockSize
	case oid.Equal(cms.OIDDESEDE3CBC):
		return 24, des.BlockSize
	}
	return 0, 0
}

// decryptPKCS8 decrypts an encrypted PKCS#8 key and parses it.
func decryptPKCS8(der, passphrase []byte) (any, error) {
	p, err := parseEncryptedPKCS8(der)
	if err != nil {
		return nil, err
	}
	keyLen, _ := cipherSizes(p.cipher)
	key, err := pbkdf2.Key(p.prf, string(passphrase), p.salt, p.iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	var block cipher.Block
	if p.cipher.Equal(cms.OIDDESEDE3CBC) {
		block, err = des.NewTripleDESCipher(key)
	} else {
		block, err = aes.NewCipher(key)
	}
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(p.ciphertext))
	cipher.NewCBCDecrypter(block, p.iv).CryptBlocks(plain, p.ciphertext)
	plain, ok := unpad(plain, block.BlockSize())
	if !ok {
		return nil, errWrongPassphrase
	}
	k, err := parsePKCS8Key(plain)
	if err != nil {
		return nil, errWrongPassphrase
	}
	return k, nil
}

// unpad removes PKCS#7 padding (RFC 8018 section 6.1.1 step 4).
func unpad(b []byte, blockSize int) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > blockSize || n > len(b) {
		return nil, false
	}
	if subtle.ConstantTimeCompare(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) != 1 {
		return nil, false
	}
	return b[:len(b)-n], true
}

// encryptPKCS8 wraps a PKCS#8 key in PBES2 with PBKDF2-HMAC-SHA256 and
// AES-256-CBC, the combination OpenSSL 3 writes and reads by default.
func encryptPKCS8(pkcs8, passphrase []byte) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), salt, keygenPBKDF2Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(pkcs8)%aes.BlockSize
	plain := append(bytes.Clone(pkcs8), bytes.Repeat([]byte{byte(n)}, n)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	clear(plain)

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPBES2)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidPBKDF2)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(salt)
						b.AddASN1Int64(keygenPBKDF2Iterations)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oidHMACWithSHA256)
							b.AddASN1NULL()
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(cms.OIDAES256CBC)
					b.AddASN1OctetString(iv)
				})
			})
		})
		b.AddASN1OctetString(ct)
	})
	return b.Bytes()
}
