package certstore

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"smimegate/internal/cms"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// OCSP (RFC 6960) is parsed by golang.org/x/crypto/ocsp, which reads the
// response, finds the SingleResponse for the certificate's serial number
// and checks a signature. That is not all of RFC 6960 section 3.2, so this
// file adds what it leaves out:
//
//   - the CertID must name our certificate's issuer (issuerNameHash and
//     issuerKeyHash), not only its serial number: a responder that serves
//     several CAs could otherwise answer for another CA's certificate with
//     the same serial (section 3.2 item 1);
//   - the signer must be the CA itself or a responder that the CA
//     delegated: issued directly by the CA, with id-kp-OCSPSigning, valid
//     when it signed (sections 2.6 and 4.2.2.2); the library accepts any
//     certificate the CA issued, so a partner's own certificate could sign
//     "good" for a revoked one (section 3.2 items 2 to 4);
//   - the responderID must name the signer (section 4.2.2.3);
//   - a critical response extension that we do not know makes the
//     response unusable (RFC 5280 section 4.2, as section 4.4 applies it);
//   - the times are judged by the caller, against revocation_max_age.
//
// scanOCSP reads the CertIDs and response extensions for these checks; it
// is our own parser and is fuzzed (FuzzVerifyOCSP).

// maxOCSPSingleResponses bounds the SingleResponses one response may
// carry: we ask about one certificate (RFC 5019 responders answer with
// one), and a few responders add the rest of a batch.
const maxOCSPSingleResponses = 64

// clockSkew is how far in the future a thisUpdate may be (a responder's
// clock a little ahead of ours) before the answer is refused.
const clockSkew = 5 * time.Minute

// OIDs of RFC 6960; the hash algorithms a CertID may use are cms.DigestByOID's.
var (
	oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
)

// ocspCertID is one SingleResponse's CertID (RFC 6960 section 4.1.1).
type ocspCertID struct {
	hash     crypto.Hash // 0: an algorithm we do not know
	nameHash []byte
	keyHash  []byte
	serial   *big.Int
}

// ocspScan is what scanOCSP reads.
type ocspScan struct {
	ids []ocspCertID
	// critical lists the critical response extensions (responseExtensions
	// of ResponseData) other than the nonce.
	critical []asn1.ObjectIdentifier
}

var errOCSPMalformed = errors.New("malformed OCSP response")

// scanOCSP reads the CertIDs and the critical response extensions of a
// successful basic OCSP response. A response that is not successful or not
// basic is left to the library, which says why.
func scanOCSP(der []byte) (*ocspScan, error) {
	in := cryptobyte.String(der)
	var resp, respBytes cryptobyte.String
	var status int
	if !in.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1Enum(&status) {
		return nil, errOCSPMalformed
	}
	if status != 0 {
		return &ocspScan{}, nil
	}
	if !resp.ReadASN1(&respBytes, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!respBytes.ReadASN1(&respBytes, cbasn1.SEQUENCE) {
		return nil, errOCSPMalformed
	}
	var typ asn1.ObjectIdentifier
	var basic cryptobyte.String
	if !respBytes.ReadASN1ObjectIdentifier(&typ) || !respBytes.ReadASN1(&basic, cbasn1.OCTET_STRING) {
		return nil, errOCSPMalformed
	}
	if !typ.Equal(oidOCSPBasic) {
		return &ocspScan{}, nil
	}
	var basicSeq, tbs cryptobyte.String
	if !basic.ReadASN1(&basicSeq, cbasn1.SEQUENCE) || !basicSeq.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, errOCSPMalformed
	}
	// version [0] EXPLICIT DEFAULT v1, then the responderID CHOICE and
	// producedAt, which the library reads.
	var responderID cryptobyte.String
	var responderTag cbasn1.Tag
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadAnyASN1(&responderID, &responderTag) || !tbs.SkipASN1(cbasn1.GeneralizedTime) {
		return nil, errOCSPMalformed
	}
	var singles cryptobyte.String
	if !tbs.ReadASN1(&singles, cbasn1.SEQUENCE) {
		return nil, errOCSPMalformed
	}
	sc := &ocspScan{}
	for !singles.Empty() {
		if len(sc.ids) == maxOCSPSingleResponses {
			return nil, fmt.Errorf("OCSP response with more than %d SingleResponses", maxOCSPSingleResponses)
		}
		var single, certID, alg cryptobyte.String
		var algOID asn1.ObjectIdentifier
		id := ocspCertID{serial: new(big.Int)}
		if !singles.ReadASN1(&single, cbasn1.SEQUENCE) || !single.ReadASN1(&certID, cbasn1.SEQUENCE) ||
			!certID.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&algOID) ||
			!certID.ReadASN1Bytes(&id.nameHash, cbasn1.OCTET_STRING) ||
			!certID.ReadASN1Bytes(&id.keyHash, cbasn1.OCTET_STRING) ||
			!certID.ReadASN1Integer(id.serial) {
			return nil, errOCSPMalformed
		}
		// A CertID hashed with an algorithm we do not know keeps hash 0
		// and so matches no certificate we ask about.
		id.hash, _ = cms.DigestByOID(algOID)
		sc.ids = append(sc.ids, id)
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, errOCSPMalformed
	}
	if present {
		if !exts.ReadASN1(&exts, cbasn1.SEQUENCE) {
			return nil, errOCSPMalformed
		}
		crit, err := criticalExtensions(exts)
		if err != nil {
			return nil, err
		}
		for _, oid := range crit {
			if !oid.Equal(oidOCSPNonce) {
				sc.critical = append(sc.critical, oid)
			}
		}
	}
	return sc, nil
}

// maxExtensions bounds the extensions read from one list: certificates
// and CRLs carry about ten.
const maxExtensions = 64

// criticalExtensions returns the OIDs of the critical extensions in the
// contents of an Extensions SEQUENCE (RFC 5280 section 4.1).
func criticalExtensions(exts cryptobyte.String) ([]asn1.ObjectIdentifier, error) {
	var crit []asn1.ObjectIdentifier
	for n := 0; !exts.Empty(); n++ {
		if n == maxExtensions {
			return nil, fmt.Errorf("more than %d extensions", maxExtensions)
		}
		var ext cryptobyte.String
		var oid asn1.ObjectIdentifier
		var critical bool
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical) ||
			!ext.SkipASN1(cbasn1.OCTET_STRING) || !ext.Empty() {
			return nil, errors.New("malformed extension")
		}
		if critical {
			crit = append(crit, oid)
		}
	}
	return crit, nil
}

// ocspRequest makes the request for cert (RFC 6960 section 4.1), with a
// SHA-1 CertID, which every responder understands (RFC 5019 section 2.1.1)
// and which is an identifier here, not a signature. No nonce: it is
// optional (section 4.4.1), responders that pre-sign ignore it, and the
// answer is cached for its validity anyway.
func ocspRequest(cert, issuer *x509.Certificate) ([]byte, error) {
	return ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
}

// errOCSPUnknown is a valid answer of status "unknown": the responder
// does not know the certificate (RFC 6960 section 2.2), so the CRL decides.
var errOCSPUnknown = errors.New(`the responder answered "unknown": it does not know this certificate`)

// verifyOCSP checks an OCSP response about cert, issued by issuer, as RFC
// 6960 section 3.2 says, except the currency of its times, which the
// caller judges (a cached answer is kept past its time: a revocation
// stays known). source names where it came from, for the answer.
func verifyOCSP(der []byte, cert, issuer *x509.Certificate, source string, maxAge time.Duration) (*revAnswer, error) {
	sc, err := scanOCSP(der)
	if err != nil {
		return nil, err
	}
	// The signer is checked below, by us; the library only checks the
	// signature of a response that carries its signer's certificate.
	resp, err := ocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("the responder refused: %s", re.Status)
		}
		return nil, fmt.Errorf("malformed OCSP response: %v", err)
	}
	if len(sc.critical) > 0 {
		return nil, fmt.Errorf("the response has a critical extension %v that is not understood (RFC 6960 section 4.4)", sc.critical[0])
	}
	if err := checkCertID(sc, cert, issuer); err != nil {
		return nil, err
	}
	if err := checkOCSPSigner(resp, issuer); err != nil {
		return nil, err
	}
	if resp.ThisUpdate.IsZero() {
		return nil, errors.New("the response has no thisUpdate")
	}
	if !resp.NextUpdate.IsZero() && resp.NextUpdate.Before(resp.ThisUpdate) {
		return nil, errors.New("the response's nextUpdate is before its thisUpdate")
	}
	a := &revAnswer{Source: "OCSP " + source, ThisUpdate: resp.ThisUpdate, NextUpdate: resp.NextUpdate, Reason: -1, complete: true}
	a.Until = answerUntil(resp.ThisUpdate, resp.NextUpdate, maxAge)
	switch resp.Status {
	case ocsp.Good:
	case ocsp.Revoked:
		a.Revoked, a.RevokedAt, a.Reason = true, resp.RevokedAt, resp.RevocationReason
	default:
		return nil, errOCSPUnknown
	}
	return a, nil
}

// answerUntil is how long an answer of thisUpdate and nextUpdate (zero:
// none) is trusted: until nextUpdate, and never longer than maxAge after
// thisUpdate (certs.revocation_max_age).
func answerUntil(thisUpdate, nextUpdate time.Time, maxAge time.Duration) time.Time {
	until := thisUpdate.Add(maxAge)
	if !nextUpdate.IsZero() && nextUpdate.Before(until) {
		until = nextUpdate
	}
	return until
}

// checkCertID checks that the first SingleResponse for cert's serial
// number, the one the library returned, names cert's issuer.
func checkCertID(sc *ocspScan, cert, issuer *x509.Certificate) error {
	for _, id := range sc.ids {
		if id.serial.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		if id.hash == 0 || !id.hash.Available() {
			return errors.New("the response's CertID uses a hash algorithm that is not supported")
		}
		bits, err := publicKeyBits(issuer.RawSubjectPublicKeyInfo)
		if err != nil {
			return err
		}
		if !bytes.Equal(id.nameHash, digest(id.hash, issuer.RawSubject)) || !bytes.Equal(id.keyHash, digest(id.hash, bits)) {
			return errors.New("the response is about a certificate with the same serial number from another issuer (its CertID names another CA)")
		}
		return nil
	}
	return errors.New("the response has no status for this certificate")
}

// checkOCSPSigner checks who signed resp: issuer itself, or a responder
// certificate issued directly by issuer for OCSP signing (RFC 6960
// section 4.2.2.2), valid when the response was produced, and named by
// the responderID.
func checkOCSPSigner(resp *ocsp.Response, issuer *x509.Certificate) error {
	signer := resp.Certificate
	switch {
	case signer == nil:
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("the response is not signed by the certificate's issuer: %v", err)
		}
		signer = issuer
	case bytes.Equal(signer.Raw, issuer.Raw):
		// Signed by the CA, which included its own certificate; the
		// library checked the signature with it.
	default:
		// A delegated responder. Its signature on the response was
		// checked by the library; now its authority.
		if !bytes.Equal(signer.RawIssuer, issuer.RawSubject) {
			return errors.New("the response is signed by a responder that the certificate's issuer did not issue")
		}
		if err := signer.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("the responder's certificate is not signed by the certificate's issuer: %v", err)
		}
		if !hasEKU(signer, x509.ExtKeyUsageOCSPSigning) {
			return errors.New("the response is signed by a certificate of the issuer that is not an OCSP responder (no id-kp-OCSPSigning, RFC 6960 section 4.2.2.2)")
		}
		at := resp.ProducedAt
		if at.IsZero() {
			at = resp.ThisUpdate
		}
		if at.Before(signer.NotBefore) || at.After(signer.NotAfter) {
			return fmt.Errorf("the responder's certificate was not valid when it signed (%s)", at.UTC().Format(time.RFC3339))
		}
	}
	switch {
	case resp.RawResponderName != nil:
		if !bytes.Equal(resp.RawResponderName, signer.RawSubject) {
			return errors.New("the responderID names another responder than the signer")
		}
	case resp.ResponderKeyHash != nil:
		bits, err := publicKeyBits(signer.RawSubjectPublicKeyInfo)
		if err != nil {
			return err
		}
		sum := sha1.Sum(bits) // RFC 6960 section 4.2.1: KeyHash is SHA-1
		if !bytes.Equal(resp.ResponderKeyHash, sum[:]) {
			return errors.New("the responderID names another responder than the signer")
		}
	}
	return nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want {
			return true
		}
	}
	return false
}

func digest(h crypto.Hash, data []byte) []byte {
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

// publicKeyBits returns the subjectPublicKey BIT STRING's bytes of a
// SubjectPublicKeyInfo, which CertID and responderID hash (RFC 6960
// section 4.1.1: "excluding the tag and length fields").
func publicKeyBits(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) {
		return nil, errors.New("cannot read the issuer's public key")
	}
	return bits.Bytes, nil
}
