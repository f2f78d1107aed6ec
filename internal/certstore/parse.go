package certstore

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"software.sslmate.com/src/go-pkcs12"
)

// maxFileSize bounds what is read from one file of the store. A certificate
// is a few kilobytes; a PKCS#7 bundle of a long chain some tens.
const maxFileSize = 1 << 20

// maxKeysPerFile bounds the private keys in one PEM file. A key file holds
// one, a bundle of a rotation a few; every encrypted one may cost up to
// maxPBKDF2Iterations of key derivation, and a key that fails no longer
// stops the file, so the count must stop it.
const maxKeysPerFile = 16

// fileContent is what one file of the store holds.
type fileContent struct {
	certs []*x509.Certificate
	keys  []crypto.PrivateKey
	// notes are remarks that do not make the file unusable, such as a
	// private key found among partner certificates and ignored.
	notes []string
	// keyErrors say why private keys in an own PEM file did not load (a
	// missing or wrong passphrase). The certificates beside them still
	// load, so that the store knows them as ours, without a key.
	keyErrors []string
}

// fileKind says which formats a directory accepts.
type fileKind int

const (
	partnerFile fileKind = iota // certificates: PEM, DER, PKCS#7
	ownFile                     // also private keys and PKCS#12
)

// errNoPassphrase is returned for an encrypted key when none was configured.
var errNoPassphrase = errors.New("the key is encrypted and no passphrase is configured (certs.key_passphrase_file or certs.key_passphrase_env)")

// parseFile reads certificates (and, for own files, keys) from data. name
// is used only to pick the format by extension and never appears in errors,
// which the caller prefixes with the file name.
func parseFile(name string, data []byte, kind fileKind, passphrase []byte) (*fileContent, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	ext := strings.ToLower(filepath.Ext(name))
	if ext == ".p12" || ext == ".pfx" {
		if kind != ownFile {
			return nil, errors.New("PKCS#12 belongs in the own directory (certs.own); give partner certificates as PEM, DER or .p7b")
		}
		return parsePKCS12(data, passphrase)
	}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return parsePEM(data, kind, passphrase)
	}
	return parseDER(data, kind, passphrase)
}

func parsePEM(data []byte, kind fileKind, passphrase []byte) (*fileContent, error) {
	fc := &fileContent{}
	rest := data
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if len(fc.certs) > maxCertsPerFile {
			return nil, fmt.Errorf("more than %d certificates in one file", maxCertsPerFile)
		}
		switch block.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			c, err := parseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
			}
			fc.certs = append(fc.certs, c)
		case "PKCS7", "CERTIFICATE CHAIN":
			cs, err := parsePKCS7Certs(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
			}
			fc.certs = append(fc.certs, cs...)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			if kind != ownFile {
				fc.notes = append(fc.notes, "holds a private key, which does not belong among partner certificates: ignored")
				continue
			}
			if len(fc.keys)+len(fc.keyErrors) == maxKeysPerFile {
				return nil, fmt.Errorf("PEM block %d: more than %d private keys in one file", n, maxKeysPerFile)
			}
			k, err := parsePEMKey(block, passphrase)
			if err != nil {
				fc.keyErrors = append(fc.keyErrors, fmt.Sprintf("PEM block %d (%s): %v", n, block.Type, err))
				continue
			}
			fc.keys = append(fc.keys, k)
		case "EC PARAMETERS", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", "X509 CRL", "PUBLIC KEY":
			// Companions that tools write beside keys and certificates
			// (`openssl ecparam -genkey`, `smimegate keygen -csr`): nothing
			// to load, nothing wrong.
		default:
			return nil, fmt.Errorf("PEM block %d has type %q, which is neither a certificate nor a key", n, block.Type)
		}
	}
	if n == 0 {
		return nil, errors.New("damaged PEM: a BEGIN line without a matching END line or valid base64")
	}
	if len(fc.keyErrors) > 0 && len(fc.certs) == 0 && len(fc.keys) == 0 {
		// Nothing but keys that failed: the file fails as a whole.
		return nil, errors.New(strings.Join(fc.keyErrors, "; "))
	}
	if len(fc.certs) == 0 && len(fc.keys) == 0 && len(fc.notes) == 0 {
		return nil, errors.New("no certificate or key in this PEM file")
	}
	return fc, nil
}

func parsePEMKey(block *pem.Block, passphrase []byte) (crypto.PrivateKey, error) {
	if _, ok := block.Headers["Proc-Type"]; ok {
		// RFC 1421 encryption: weak (MD5-based key derivation) and
		// deprecated in Go, so it is not read.
		return nil, errors.New("legacy PEM encryption (Proc-Type) is not supported: convert with `openssl pkcs8 -topk8 -v2 aes256`")
	}
	switch block.Type {
	case "PRIVATE KEY":
		return parsePKCS8Key(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default: // ENCRYPTED PRIVATE KEY
		if len(passphrase) == 0 {
			return nil, errNoPassphrase
		}
		return decryptPKCS8(block.Bytes, passphrase)
	}
}

// parseDER tries the binary forms in turn: certificate, PKCS#7, then (own
// files only) the unencrypted key encodings and PKCS#12.
func parseDER(data []byte, kind fileKind, passphrase []byte) (*fileContent, error) {
	if c, err := parseCertificate(data); err == nil {
		return &fileContent{certs: []*x509.Certificate{c}}, nil
	}
	certs, p7err := parsePKCS7Certs(data)
	if p7err == nil {
		return &fileContent{certs: certs}, nil
	}
	if kind == ownFile {
		if k, err := parsePKCS8Key(data); err == nil {
			return &fileContent{keys: []crypto.PrivateKey{k}}, nil
		}
		if k, err := x509.ParsePKCS1PrivateKey(data); err == nil {
			return &fileContent{keys: []crypto.PrivateKey{k}}, nil
		}
		if k, err := x509.ParseECPrivateKey(data); err == nil {
			return &fileContent{keys: []crypto.PrivateKey{k}}, nil
		}
		if _, err := parseEncryptedPKCS8(data); err == nil {
			if len(passphrase) == 0 {
				return nil, errNoPassphrase
			}
			k, err := decryptPKCS8(data, passphrase)
			if err != nil {
				return nil, err
			}
			return &fileContent{keys: []crypto.PrivateKey{k}}, nil
		}
		if fc, err := parsePKCS12(data, passphrase); err == nil {
			return fc, nil
		}
	}
	if kind == ownFile {
		return nil, errors.New("neither PEM nor a DER certificate, PKCS#7 bundle, private key or PKCS#12 file")
	}
	return nil, errors.New("neither PEM nor a DER certificate or PKCS#7 bundle")
}

// parsePKCS12 reads one key with its certificate and chain (RFC 7292), as
// `openssl pkcs12 -export` writes it (OpenSSL 3: AES-256-CBC, PBKDF2).
func parsePKCS12(data, passphrase []byte) (*fileContent, error) {
	if err := checkPFXMac(data); err != nil {
		return nil, fmt.Errorf("PKCS#12: %w", err)
	}
	key, cert, chain, err := pkcs12.DecodeChain(data, string(passphrase))
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			if len(passphrase) == 0 {
				return nil, fmt.Errorf("PKCS#12: %w", errNoPassphrase)
			}
			return nil, errors.New("PKCS#12: wrong passphrase")
		}
		return nil, fmt.Errorf("PKCS#12: %w", err)
	}
	return &fileContent{certs: append([]*x509.Certificate{cert}, chain...), keys: []crypto.PrivateKey{key}}, nil
}

// maxPKCS12Iterations bounds the MAC key derivation of a PKCS#12 file.
// OpenSSL writes 2048 iterations, Windows 2000; a million is far beyond
// both and still ends in well under a second.
const maxPKCS12Iterations = 1_000_000

// oidPBMAC1 is the PBMAC1 MAC algorithm (RFC 8018 section 7.1, for PKCS#12
// by RFC 9579).
var oidPBMAC1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}

// checkPFXMac reads just enough of a PFX (RFC 7292 section 4) to refuse,
// before any key derivation, a file without an integrity MAC or one whose
// MAC demands unbounded work. Without a MAC, go-pkcs12 would go on to
// decrypt with iteration counts taken from unauthenticated data; with one,
// nothing is decrypted before the MAC, keyed by the passphrase, matches.
func checkPFXMac(der []byte) error {
	in := cryptobyte.String(der)
	var pfx, authSafe, macData, digestInfo, alg cryptobyte.String
	var version int
	var hasMac bool
	var algOID asn1.ObjectIdentifier
	if !in.ReadASN1(&pfx, cbasn1.SEQUENCE) || !pfx.ReadASN1Integer(&version) ||
		!pfx.ReadASN1(&authSafe, cbasn1.SEQUENCE) ||
		!pfx.ReadOptionalASN1(&macData, &hasMac, cbasn1.SEQUENCE) {
		return errors.New("not a DER PFX structure")
	}
	if !hasMac {
		return errors.New("the file has no integrity MAC, which is not accepted")
	}
	if !macData.ReadASN1(&digestInfo, cbasn1.SEQUENCE) || !digestInfo.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&algOID) {
		return errors.New("malformed MAC")
	}
	iterations := 1 // RFC 7292 appendix: iterations INTEGER DEFAULT 1
	if algOID.Equal(oidPBMAC1) {
		// PBMAC1-params ::= SEQUENCE { keyDerivationFunc, messageAuthScheme };
		// the iteration count sits in the PBKDF2 parameters.
		var params, kdf, kdfParams, salt cryptobyte.String
		var kdfOID asn1.ObjectIdentifier
		if !alg.ReadASN1(&params, cbasn1.SEQUENCE) || !params.ReadASN1(&kdf, cbasn1.SEQUENCE) ||
			!kdf.ReadASN1ObjectIdentifier(&kdfOID) || !kdfOID.Equal(oidPBKDF2) ||
			!kdf.ReadASN1(&kdfParams, cbasn1.SEQUENCE) || !kdfParams.ReadASN1(&salt, cbasn1.OCTET_STRING) ||
			!kdfParams.ReadASN1Integer(&iterations) {
			return errors.New("malformed PBMAC1 parameters")
		}
	} else {
		var salt cryptobyte.String
		if !macData.ReadASN1(&salt, cbasn1.OCTET_STRING) {
			return errors.New("malformed MAC salt")
		}
		if !macData.Empty() && !macData.ReadASN1Integer(&iterations) {
			return errors.New("malformed MAC iteration count")
		}
	}
	if iterations < 1 || iterations > maxPKCS12Iterations {
		return fmt.Errorf("MAC iteration count %d is outside 1 to %d", iterations, maxPKCS12Iterations)
	}
	return nil
}
