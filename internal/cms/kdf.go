package cms

import (
	"crypto"
	"crypto/hkdf"
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// eccSharedInfo encodes ECC-CMS-SharedInfo (RFC 5753 section 7.2), the
// context that binds the derived key-encryption key to the key-wrap
// algorithm and its length. wrapAlg is the DER AlgorithmIdentifier of the
// key-wrap algorithm exactly as the KeyAgreeRecipientInfo carries it.
func eccSharedInfo(wrapAlg, ukm []byte, kekLen int) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(wrapAlg)
		if ukm != nil {
			b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
		b.AddASN1(casn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			// suppPubInfo: the key length in bits, as a 32-bit big-endian number.
			var bits [4]byte
			binary.BigEndian.PutUint32(bits[:], uint32(kekLen*8))
			b.AddASN1OctetString(bits[:])
		})
	})
	return b.BytesOrPanic()
}

// x963KDF is the ANSI X9.63 key derivation function that RFC 5753 section
// 3.1.1 uses: the concatenation of Hash(Z || counter || SharedInfo) for a
// 32-bit counter starting at 1, cut to n bytes.
func x963KDF(h crypto.Hash, z, sharedInfo []byte, n int) []byte {
	out := make([]byte, 0, n+h.Size())
	var ctr [4]byte
	for i := uint32(1); len(out) < n; i++ {
		binary.BigEndian.PutUint32(ctr[:], i)
		d := h.New()
		d.Write(z)
		d.Write(ctr[:])
		d.Write(sharedInfo)
		out = d.Sum(out)
	}
	return out[:n]
}

// hkdfKDF is the key derivation of RFC 8418 section 2.2: HKDF with the
// shared secret as input keying material, the ukm (when the sender gave
// one) as salt, and the DER ECC-CMS-SharedInfo as info.
func hkdfKDF(h crypto.Hash, z, ukm, sharedInfo []byte, n int) ([]byte, error) {
	return hkdf.Key(h.New, z, ukm, string(sharedInfo), n)
}
