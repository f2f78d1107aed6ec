package certstore

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// A CRL (RFC 5280 section 5) is read in two parts. Its frame (issuer,
// times, signature algorithm, extensions) is read by Go's
// x509.ParseRevocationList from a copy without the revoked certificates;
// its revokedCertificates are scanned here, straight into a sorted index
// of serial numbers. ParseRevocationList alone would do, but it builds two
// structures per entry: for a CRL of 8.5 MB with 250,000 entries it keeps
// 68 MiB live and allocates 263 MiB, where this keeps 10 MiB (about 40
// bytes an entry) and allocates 56 MiB, in less time (BenchmarkParseCRL).
// The signature is checked over the original tbsCertList,
// so nothing of the CRL goes unverified. The scanner is our own parser and
// is fuzzed (FuzzParseCRL).
//
// What RFC 5280 section 6.3.3 asks beyond the signature is checked too: the
// CRL's issuer is the certificate's issuer and holds cRLSign (item f); a
// delta CRL is not a complete CRL; an issuing distribution point must cover
// the certificate (item b); an indirect CRL (certificateIssuer entries) or
// one for some reasons only is not used to say "not revoked"; a critical
// extension we do not understand makes the CRL unusable (section 5.2).

// OIDs of the CRL and CRL entry extensions of RFC 5280 sections 5.2 and 5.3.
var (
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber        = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRL         = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDP        = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidFreshestCRL      = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidAuthorityInfo    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidReasonCode       = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate   = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidHoldInstruction  = asn1.ObjectIdentifier{2, 5, 29, 23}
	oidCertificateIssue = asn1.ObjectIdentifier{2, 5, 29, 29}
)

// reasonRemoveFromCRL (RFC 5280 section 5.3.1) belongs in delta CRLs: an
// entry with it says the certificate is no longer revoked.
const reasonRemoveFromCRL = 8

// maxGeneralNames bounds the names of a distribution point read from an
// issuing distribution point extension.
const maxGeneralNames = 16

// crlIndex is a verified CRL, reduced to what revocation needs.
type crlIndex struct {
	source                 string // "CRL http://..."
	thisUpdate, nextUpdate time.Time
	until                  time.Time // answerUntil of the two
	// scope of an issuing distribution point (zero: the whole CRL).
	idp issuingDP
	// The revoked serial numbers (normalised DER contents, sorted) with
	// their revocation time (Unix seconds) and reason (-1: none given).
	serials   []string
	revokedAt []int64
	reasons   []int8
}

// issuingDP is an issuing distribution point extension (RFC 5280 section
// 5.2.5).
type issuingDP struct {
	present         bool
	uris            []string // fullName's uniformResourceIdentifiers
	otherNames      bool     // fullName also had names of other kinds, or a nameRelativeToCRLIssuer
	onlyUser        bool
	onlyCA          bool
	onlySomeReasons bool
	indirect        bool
	onlyAttribute   bool
}

// parseCRL verifies der as a CRL issued by issuer and returns its index.
// fetchedFrom is the distribution point it came from.
func parseCRL(der []byte, issuer *x509.Certificate, fetchedFrom string, maxAge time.Duration) (*crlIndex, error) {
	frame, tbs, entries, err := splitCRL(der)
	if err != nil {
		return nil, err
	}
	rl, err := x509.ParseRevocationList(frame)
	if err != nil {
		return nil, fmt.Errorf("malformed CRL: %v", err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("the CRL is issued by %q, not by the certificate's issuer %q", rl.Issuer, issuer.Subject)
	}
	// RFC 5280 section 6.3.3 (f): the CRL issuer must be allowed to sign
	// CRLs, and its signature must verify over the original tbsCertList.
	if issuer.BasicConstraintsValid && !issuer.IsCA || issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, errors.New("the certificate's issuer may not sign CRLs (no cRLSign)")
	}
	if err := issuer.CheckSignature(rl.SignatureAlgorithm, tbs, rl.Signature); err != nil {
		return nil, fmt.Errorf("the CRL's signature does not verify with the issuer's key: %v", err)
	}
	if len(rl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, issuer.SubjectKeyId) {
		return nil, errors.New("the CRL names another key of its issuer (authorityKeyIdentifier)")
	}
	if rl.ThisUpdate.IsZero() || !rl.NextUpdate.IsZero() && rl.NextUpdate.Before(rl.ThisUpdate) {
		return nil, errors.New("the CRL's thisUpdate and nextUpdate are inconsistent")
	}
	ix := &crlIndex{source: "CRL " + fetchedFrom, thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate}
	ix.until = answerUntil(rl.ThisUpdate, rl.NextUpdate, maxAge)
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRL):
			return nil, errors.New("a delta CRL, not a complete one")
		case ext.Id.Equal(oidIssuingDP):
			if ix.idp, err = parseIssuingDP(ext.Value); err != nil {
				return nil, fmt.Errorf("issuing distribution point: %v", err)
			}
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidCRLNumber), ext.Id.Equal(oidFreshestCRL), ext.Id.Equal(oidAuthorityInfo):
		case ext.Critical:
			return nil, fmt.Errorf("the CRL has a critical extension %v that is not understood (RFC 5280 section 5.2)", ext.Id)
		}
	}
	if ix.idp.indirect {
		return nil, errors.New("an indirect CRL, which is not supported")
	}
	if err := ix.scanEntries(entries); err != nil {
		return nil, err
	}
	return ix, nil
}

// splitCRL splits a CertificateList (RFC 5280 section 5.1) into a copy of
// it without revokedCertificates (frame), the original tbsCertList with its
// header (tbs, what the signature covers) and the contents of its
// revokedCertificates (entries, possibly empty).
func splitCRL(der []byte) (frame, tbs []byte, entries cryptobyte.String, err error) {
	malformed := errors.New("malformed CRL")
	in := cryptobyte.String(der)
	var list, tbsBody, rest cryptobyte.String
	var tbsFull cryptobyte.String
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, nil, malformed
	}
	rest = list
	if !rest.ReadASN1Element(&tbsFull, cbasn1.SEQUENCE) {
		return nil, nil, nil, malformed
	}
	tail := []byte(rest) // signatureAlgorithm and signatureValue
	body := tbsFull
	if !body.ReadASN1(&tbsBody, cbasn1.SEQUENCE) {
		return nil, nil, nil, malformed
	}
	// version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL
	start := len(tbsBody)
	cur := tbsBody
	if cur.PeekASN1Tag(cbasn1.INTEGER) && !cur.SkipASN1(cbasn1.INTEGER) {
		return nil, nil, nil, malformed
	}
	if !cur.SkipASN1(cbasn1.SEQUENCE) || !cur.SkipASN1(cbasn1.SEQUENCE) {
		return nil, nil, nil, malformed
	}
	for range 2 { // thisUpdate, and nextUpdate when present
		ok := true
		switch {
		case cur.PeekASN1Tag(cbasn1.UTCTime):
			ok = cur.SkipASN1(cbasn1.UTCTime)
		case cur.PeekASN1Tag(cbasn1.GeneralizedTime):
			ok = cur.SkipASN1(cbasn1.GeneralizedTime)
		}
		if !ok {
			return nil, nil, nil, malformed
		}
	}
	head := tbsBody[:start-len(cur)]
	var after []byte
	if cur.PeekASN1Tag(cbasn1.SEQUENCE) {
		if !cur.ReadASN1(&entries, cbasn1.SEQUENCE) {
			return nil, nil, nil, malformed
		}
	}
	after = cur // crlExtensions [0], if any
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(head)
			b.AddBytes(after)
		})
		b.AddBytes(tail)
	})
	frame, err = b.Bytes()
	if err != nil {
		return nil, nil, nil, malformed
	}
	return frame, tbsFull, entries, nil
}

// scanEntries reads the revokedCertificates into the index: each entry is
// SEQUENCE { userCertificate INTEGER, revocationDate Time,
// crlEntryExtensions OPTIONAL } (RFC 5280 section 5.1).
func (ix *crlIndex) scanEntries(entries cryptobyte.String) error {
	type entry struct {
		serial string
		at     int64
		reason int8
	}
	var es []entry
	for !entries.Empty() {
		var e, serial cryptobyte.String
		if !entries.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1(&serial, cbasn1.INTEGER) {
			return errors.New("malformed CRL entry")
		}
		key, ok := serialKeyFromDER(serial)
		if !ok {
			return errors.New("malformed serial number in a CRL entry")
		}
		var at time.Time
		switch {
		case e.PeekASN1Tag(cbasn1.UTCTime):
			ok = e.ReadASN1UTCTime(&at)
		case e.PeekASN1Tag(cbasn1.GeneralizedTime):
			ok = e.ReadASN1GeneralizedTime(&at)
		default:
			ok = false
		}
		if !ok {
			return errors.New("malformed revocation date in a CRL entry")
		}
		reason := int8(-1)
		if !e.Empty() {
			var exts cryptobyte.String
			if !e.ReadASN1(&exts, cbasn1.SEQUENCE) || !e.Empty() {
				return errors.New("malformed CRL entry extensions")
			}
			r, err := entryReason(exts)
			if err != nil {
				return err
			}
			reason = r
		}
		if reason == reasonRemoveFromCRL {
			continue
		}
		es = append(es, entry{key, at.Unix(), reason})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].serial < es[j].serial })
	ix.serials = make([]string, len(es))
	ix.revokedAt = make([]int64, len(es))
	ix.reasons = make([]int8, len(es))
	for i, e := range es {
		ix.serials[i], ix.revokedAt[i], ix.reasons[i] = e.serial, e.at, e.reason
	}
	return nil
}

// entryReason reads a CRL entry's extensions: its reasonCode, if any. A
// certificateIssuer (an indirect CRL) or another critical extension makes
// the CRL unusable (RFC 5280 section 5.3).
func entryReason(exts cryptobyte.String) (int8, error) {
	reason := int8(-1)
	for n := 0; !exts.Empty(); n++ {
		if n == maxExtensions {
			return 0, fmt.Errorf("a CRL entry with more than %d extensions", maxExtensions)
		}
		var ext, value cryptobyte.String
		var oid asn1.ObjectIdentifier
		var critical bool
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical) ||
			!ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return 0, errors.New("malformed CRL entry extension")
		}
		switch {
		case oid.Equal(oidReasonCode):
			var r int
			if !value.ReadASN1Enum(&r) || r < 0 || r > 10 {
				return 0, errors.New("malformed reasonCode in a CRL entry")
			}
			reason = int8(r)
		case oid.Equal(oidCertificateIssue):
			return 0, errors.New("an indirect CRL (certificateIssuer entries), which is not supported")
		case oid.Equal(oidInvalidityDate), oid.Equal(oidHoldInstruction):
		case critical:
			return 0, fmt.Errorf("a CRL entry has a critical extension %v that is not understood (RFC 5280 section 5.3)", oid)
		}
	}
	return reason, nil
}

// serialKeyFromDER normalises the contents of a DER INTEGER to the form
// serialKey gives a certificate's serial number. It refuses what is not
// minimal DER (X.690 section 8.3.2).
func serialKeyFromDER(c []byte) (string, bool) {
	switch {
	case len(c) == 0:
		return "", false
	case len(c) > 1 && (c[0] == 0 && c[1]&0x80 == 0 || c[0] == 0xff && c[1]&0x80 != 0):
		return "", false
	case c[0]&0x80 != 0:
		return "-" + string(c), true // negative: no certificate we check has one
	case len(c) > 1 && c[0] == 0:
		return string(c[1:]), true
	}
	return string(c), true
}

// serialKey is a certificate's serial number as the index holds it.
func serialKey(n *big.Int) string {
	switch n.Sign() {
	case 0:
		return "\x00"
	case -1:
		return "-neg" // never in an index: negative keys keep their sign byte
	}
	return string(n.Bytes())
}

// lookup returns whether the serial is listed, when and why.
func (ix *crlIndex) lookup(serial *big.Int) (revoked bool, at time.Time, reason int) {
	k := serialKey(serial)
	i, found := slices.BinarySearch(ix.serials, k)
	if !found {
		return false, time.Time{}, -1
	}
	return true, time.Unix(ix.revokedAt[i], 0).UTC(), int(ix.reasons[i])
}

// covers says whether the CRL speaks for cert, fetched from one of its
// distribution points (RFC 5280 section 6.3.3 (b)(2)): both "revoked" and
// "not revoked" need that. complete is false when it may list only some
// reasons, which says "revoked" but not "not revoked".
func (ix *crlIndex) covers(cert *x509.Certificate) (covers, complete bool, why string) {
	d := ix.idp
	if !d.present {
		return true, true, ""
	}
	switch {
	case d.onlyAttribute:
		return false, false, "the CRL covers attribute certificates only"
	case d.onlyUser && cert.BasicConstraintsValid && cert.IsCA:
		return false, false, "the CRL covers end-entity certificates only"
	case d.onlyCA && !(cert.BasicConstraintsValid && cert.IsCA):
		return false, false, "the CRL covers CA certificates only"
	}
	if len(d.uris) > 0 || d.otherNames {
		match := false
		for _, u := range d.uris {
			if slices.Contains(cert.CRLDistributionPoints, u) {
				match = true
			}
		}
		if !match {
			return false, false, "the CRL's issuing distribution point is not one the certificate names (a partitioned CRL for other certificates)"
		}
	}
	if d.onlySomeReasons {
		return true, false, "the CRL covers only some revocation reasons"
	}
	return true, true, ""
}

// parseIssuingDP reads an IssuingDistributionPoint (RFC 5280 section
// 5.2.5); its fields are IMPLICIT-tagged, its distributionPoint a CHOICE.
func parseIssuingDP(der []byte) (issuingDP, error) {
	d := issuingDP{present: true}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return d, errors.New("malformed")
	}
	var dpName cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&dpName, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return d, errors.New("malformed distributionPoint")
	}
	if present {
		var names cryptobyte.String
		var tag cbasn1.Tag
		if !dpName.ReadAnyASN1(&names, &tag) || !dpName.Empty() {
			return d, errors.New("malformed distributionPoint")
		}
		switch tag {
		case cbasn1.Tag(0).Constructed().ContextSpecific(): // fullName GeneralNames
			for n := 0; !names.Empty(); n++ {
				if n == maxGeneralNames {
					return d, fmt.Errorf("more than %d names in the distribution point", maxGeneralNames)
				}
				var name cryptobyte.String
				var nt cbasn1.Tag
				if !names.ReadAnyASN1(&name, &nt) {
					return d, errors.New("malformed GeneralName")
				}
				if nt == cbasn1.Tag(6).ContextSpecific() { // uniformResourceIdentifier
					d.uris = append(d.uris, string(name))
				} else {
					d.otherNames = true
				}
			}
		case cbasn1.Tag(1).Constructed().ContextSpecific(): // nameRelativeToCRLIssuer
			d.otherNames = true
		default:
			return d, errors.New("malformed distributionPoint")
		}
	}
	for _, f := range []struct {
		tag int
		out *bool
	}{{1, &d.onlyUser}, {2, &d.onlyCA}, {3, &d.onlySomeReasons}, {4, &d.indirect}, {5, &d.onlyAttribute}} {
		var v cryptobyte.String
		var ok bool
		if !seq.ReadOptionalASN1(&v, &ok, cbasn1.Tag(f.tag).ContextSpecific()) {
			return d, errors.New("malformed")
		}
		if !ok {
			continue
		}
		if f.tag == 3 { // onlySomeReasons ReasonFlags: present is what matters
			*f.out = true
			continue
		}
		if len(v) != 1 || v[0] != 0 && v[0] != 0xff {
			return d, errors.New("malformed BOOLEAN")
		}
		*f.out = v[0] == 0xff
	}
	if !seq.Empty() {
		return d, errors.New("unexpected fields")
	}
	return d, nil
}
