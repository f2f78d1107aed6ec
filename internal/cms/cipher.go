package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/asn1"
	"fmt"
)

// ContentCipher is the content-encryption algorithm that Encrypt uses. The
// zero value is AES256GCM, the default of RFC 8551 section 2.7.
type ContentCipher int

// The content ciphers that Encrypt offers. GCM produces AuthEnvelopedData
// (RFC 5083, RFC 5084); CBC produces EnvelopedData (RFC 3565) for peers that
// cannot read AuthEnvelopedData.
const (
	AES256GCM ContentCipher = iota
	AES128GCM
	AES128CBC
	AES192CBC
	AES256CBC
)

// contentAlg describes one content-encryption algorithm, for both
// directions. Decrypt also knows algorithms that Encrypt never uses
// (AES-192-GCM, 3DES).
type contentAlg struct {
	name   string
	oid    asn1.ObjectIdentifier
	keyLen int
	aead   bool
	legacy bool // 3DES: only with DecryptOptions.Allow3DES
}

var (
	algAES128GCM = &contentAlg{name: "aes128-gcm", oid: oidAES128GCM, keyLen: 16, aead: true}
	algAES192GCM = &contentAlg{name: "aes192-gcm", oid: oidAES192GCM, keyLen: 24, aead: true}
	algAES256GCM = &contentAlg{name: "aes256-gcm", oid: oidAES256GCM, keyLen: 32, aead: true}
	algAES128CBC = &contentAlg{name: "aes128-cbc", oid: oidAES128CBC, keyLen: 16}
	algAES192CBC = &contentAlg{name: "aes192-cbc", oid: oidAES192CBC, keyLen: 24}
	algAES256CBC = &contentAlg{name: "aes256-cbc", oid: oidAES256CBC, keyLen: 32}
	algDES3CBC   = &contentAlg{name: "des-ede3-cbc", oid: oidDESEDE3CBC, keyLen: 24, legacy: true}
)

// encryptAlgs maps each ContentCipher to its algorithm, in constant order.
var encryptAlgs = [...]*contentAlg{
	AES256GCM: algAES256GCM,
	AES128GCM: algAES128GCM,
	AES128CBC: algAES128CBC,
	AES192CBC: algAES192CBC,
	AES256CBC: algAES256CBC,
}

// decryptAlgs lists every content-encryption algorithm Decrypt accepts.
var decryptAlgs = []*contentAlg{
	algAES128GCM, algAES192GCM, algAES256GCM,
	algAES128CBC, algAES192CBC, algAES256CBC,
	algDES3CBC,
}

func (c ContentCipher) alg() (*contentAlg, error) {
	if c < 0 || int(c) >= len(encryptAlgs) {
		return nil, fmt.Errorf("cms: unknown content cipher %d", int(c))
	}
	return encryptAlgs[c], nil
}

// String returns the name used in the configuration file, e.g. "aes256-gcm".
func (c ContentCipher) String() string {
	a, err := c.alg()
	if err != nil {
		return fmt.Sprintf("ContentCipher(%d)", int(c))
	}
	return a.name
}

// AEAD reports whether c is an authenticated cipher (AES-GCM), which
// Encrypt writes as AuthEnvelopedData.
func (c ContentCipher) AEAD() bool {
	a, err := c.alg()
	return err == nil && a.aead
}

// ParseCipher parses a configuration name such as "aes256-gcm".
func ParseCipher(name string) (ContentCipher, error) {
	for c, a := range encryptAlgs {
		if a.name == name {
			return ContentCipher(c), nil
		}
	}
	return 0, fmt.Errorf("cms: unknown cipher %q (want aes128-gcm, aes256-gcm, aes128-cbc, aes192-cbc or aes256-cbc)", name)
}

// RSAPadding is the RSA key-transport padding for an RSA recipient. The zero
// value is PKCS1v15, which every S/MIME peer reads; OAEP (RFC 3560) is
// stronger but not read by NSS.
type RSAPadding int

// The RSA paddings that Encrypt offers.
const (
	PKCS1v15 RSAPadding = iota
	OAEP
)

// String returns the configuration name, "pkcs1v15" or "oaep".
func (p RSAPadding) String() string {
	switch p {
	case PKCS1v15:
		return "pkcs1v15"
	case OAEP:
		return "oaep"
	}
	return fmt.Sprintf("RSAPadding(%d)", int(p))
}

// ParseRSAPadding parses a configuration name, "pkcs1v15" or "oaep".
func ParseRSAPadding(name string) (RSAPadding, error) {
	switch name {
	case "pkcs1v15":
		return PKCS1v15, nil
	case "oaep":
		return OAEP, nil
	}
	return 0, fmt.Errorf("cms: unknown RSA padding %q (want pkcs1v15 or oaep)", name)
}

// block returns the block cipher for key.
func (a *contentAlg) block(key []byte) (cipher.Block, error) {
	if a.legacy {
		return des.NewTripleDESCipher(key)
	}
	return aes.NewCipher(key)
}

// ivLen is the length of the CBC initialisation vector, or of the GCM nonce
// (RFC 5084 section 3.2 recommends 12 bytes, and it is the only length we
// write or accept).
func (a *contentAlg) ivLen() int {
	switch {
	case a.aead:
		return gcmNonceSize
	case a.legacy:
		return des.BlockSize
	}
	return aes.BlockSize
}

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
)
