package smime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"smimegate/internal/cms"
)

// Outcome is what Open made of a message. The outcomes of an encrypted
// message are kept apart because the gateway treats them differently
// (draft-ramsdell section 5.2).
type Outcome int

const (
	// NotEncrypted: no CMS encrypted content where Open looks for it;
	// relay the message unaltered.
	NotEncrypted Outcome = iota
	// NotForUs: encrypted, but to none of our certificates (end-to-end
	// S/MIME to a user, a forwarded smime.p7m); relay it unaltered.
	NotForUs
	// Opened: encrypted to us and decrypted; relay Trace and Message
	// (after the gateway's own Received field) instead of the message.
	Opened
	// Failed: encrypted to us (or labelled encrypted, or not inspectable)
	// and not opened; never relay it (draft-ramsdell section 5.2 step 2):
	// quarantine it with Err as the reason.
	Failed
	// KeyUnavailable: encrypted to one of our certificates whose private
	// key is not loaded (cms.ErrKeyUnavailable), and no loaded key opened
	// it. The message is not at fault: it waits. The gateway defers it
	// with the semantics of a 4xx reply (it stays queued and is tried
	// again) and raises an alarm; it never passes it on, and does not
	// quarantine it at once.
	KeyUnavailable
)

// DefaultMaxSize is the limit on a sealed message when OpenOptions.MaxSize
// is 0: above the default smtp.max_message_bytes (50 MiB), so that anything
// the gateway accepted can be opened, and low enough that the one-shot
// decryption (about 1.75 times the input, see the package comment) stays
// well inside a small machine's memory.
const DefaultMaxSize = 64 << 20

// ErrTooLarge is returned (wrapped, as OpenResult.Err) for a sealed message
// larger than OpenOptions.MaxSize.
var ErrTooLarge = errors.New("smime: encrypted message exceeds the size limit")

// OpenOptions are the inbound policy settings.
type OpenOptions struct {
	// Allow3DES lets 3DES-CBC content be opened (policy.allow_3des).
	Allow3DES bool
	// MaxSize refuses larger encrypted parts before anything is
	// allocated for them, and bounds the bytes that inspecting one
	// message may decode; 0 means DefaultMaxSize.
	MaxSize int64
	// MaxHeaderBytes bounds each header section that is parsed: the
	// message's, every body part's, and the decrypted plaintext's; 0
	// means DefaultMaxHeaderBytes. It should be at least
	// smtp.max_header_bytes, or mail that the SMTP receiver accepted
	// cannot be inspected.
	MaxHeaderBytes int
}

// limits returns MaxSize and MaxHeaderBytes with their defaults, the one
// place Inspect and Open take them from, so that both decide alike.
func (o OpenOptions) limits() (maxSize int64, maxHeader int) {
	maxSize, maxHeader = o.MaxSize, o.MaxHeaderBytes
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	return maxSize, maxHeader
}

// OpenResult is the outcome of Open.
type OpenResult struct {
	Outcome Outcome
	// Message is, for Opened, the message to relay: the decrypted one,
	// checked (see the package comment: no NUL, no bare CR, CRLF line
	// ends, a final CRLF) and without the outer trace fields.
	Message []byte
	// Trace is, for Opened, the trace fields of the outer header (every
	// Received and Return-Path field, raw, in their order, CRLF line
	// ends), which RFC 5321 section 4.4 forbids deleting. The gateway
	// writes its own Received field, then Trace, then Message.
	Trace []byte
	// EightBit is, for Opened, whether Trace or Message has a byte of 0x80
	// or more: the gateway sends such a message with BODY=8BITMIME (RFC
	// 6152).
	EightBit bool
	// Where names the encrypted part that Opened, KeyUnavailable, NotForUs
	// and Failed are about ("the message body", "part 1
	// (application/pkcs7-mime)"); "" when there is none.
	Where string
	Info  *cms.Info // Opened (and Failed after decryption): what was used
	// Err says why for Failed and KeyUnavailable, and carries
	// cms.ErrNotForUs for NotForUs.
	Err error
}

// Inspect finds out, without any private-key operation, what Open would do
// with msg: it runs the same walk and makes the same decisions (see Open),
// with certs standing for the certificates of Open's keys (all of them,
// those whose key is not loaded too). The gateway calls it before its
// reply to the SMTP client, so its answer depends only on what the message
// shows anyone; its cost is one decoding of each encrypted part and a parse
// of its RecipientInfos.
//
// For the same msg and options, and certs the certificates of keys:
//
//   - Inspection{Err: non-nil}: Open returns Failed;
//   - Encrypted and ForUs: Open returns Opened, KeyUnavailable or Failed
//     (the decryption or the decrypted content failed);
//   - Encrypted, not ForUs: Open returns NotForUs;
//   - neither: Open returns NotEncrypted.
//
// So mail for which Err != nil or ForUs holds must be made durable before
// the SMTP reply and never relayed before Open has run; any other mail
// leaves the gateway as it came.
func Inspect(msg []byte, certs []*x509.Certificate, opts OpenOptions) Inspection {
	ins, _ := inspect(msg, certs, opts)
	return ins
}

// Open finds CMS encrypted content in msg by what its bodies contain, not
// by their labels, and opens it with one of keys. msg is never modified, so
// a message that is not opened can be relayed or quarantined as it came.
//
// The walk (see walk.go) visits the message body, the parts of multipart
// bodies, encapsulated messages and the encapsulated content of signed and
// compressed CMS parts, within bounds of depth (16), parts (1000), header
// size (OpenOptions.MaxHeaderBytes) and decoded bytes (OpenOptions.MaxSize);
// a message beyond a bound is Failed. For every part whose body is CMS
// EnvelopedData or AuthEnvelopedData:
//
//   - not addressed to one of keys' certificates: it is left alone (a
//     message whose only such content it is, is NotForUs);
//   - addressed to us and it is the message body, or the signed content of
//     a top-level multipart/signed of two parts or of a top-level opaque
//     SignedData (encrypt-then-sign, RFC 8551 section 3.7): it is
//     decrypted, and the message to relay is its plaintext under the outer
//     header. A signature layer around it is dropped, unverified: it
//     covered the ciphertext, which is not relayed; verifying it is future
//     work;
//   - addressed to us anywhere else (an attachment, deeper): Failed, with
//     a reason that names the part.
//
// Memory (see the package comment): one decoded buffer of at most 3/4 of
// the encrypted part for base64 or its size for a binary body, in which
// cms.Decrypt works in place, and a copy only for a peer that encrypted only
// a body part (joined to the outer header) or LF-only text (line ends made
// CRLF). AES-GCM authenticates the whole content before releasing any of
// it, so this cannot be streamed; an encrypted part larger than
// opts.MaxSize is refused with ErrTooLarge.
func Open(msg []byte, keys []cms.KeyPair, opts OpenOptions) OpenResult {
	certs := make([]*x509.Certificate, 0, len(keys))
	for _, k := range keys {
		certs = append(certs, k.Cert)
	}
	ins, t := inspect(msg, certs, opts)
	switch {
	case ins.Err != nil:
		return OpenResult{Outcome: Failed, Where: ins.Where, Err: fmt.Errorf("smime: %w", ins.Err)}
	case !ins.Encrypted:
		return OpenResult{Outcome: NotEncrypted}
	case !ins.ForUs:
		return OpenResult{Outcome: NotForUs, Where: ins.Where, Err: fmt.Errorf("smime: %s: %w", ins.Where, cms.ErrNotForUs)}
	}
	failed := func(info *cms.Info, err error) OpenResult {
		return OpenResult{Outcome: Failed, Where: t.where, Info: info, Err: fmt.Errorf("smime: open %s: %w", t.where, err)}
	}
	maxSize, maxHeader := opts.limits()
	der := t.der
	if t.raw {
		// cms.Decrypt works in place, and this aliases msg.
		der = bytes.Clone(der)
	}
	pt, info, err := cms.Decrypt(der, keys, cms.DecryptOptions{Allow3DES: opts.Allow3DES, MaxSize: maxSize})
	switch {
	case errors.Is(err, cms.ErrKeyUnavailable):
		return OpenResult{Outcome: KeyUnavailable, Where: t.where, Err: fmt.Errorf("smime: open %s: %w", t.where, err)}
	case errors.Is(err, cms.ErrNotForUs):
		// cms.Addressed said it is for us: never pass it on unopened.
		return failed(nil, fmt.Errorf("addressed to our certificate, yet no key matches: %w", err))
	case err != nil:
		return failed(nil, err)
	}
	header, _ := entity(msg)
	out, err := unwrap(pt, header, maxHeader)
	if err != nil {
		return failed(info, err)
	}
	// RFC 9788: the payload's own header is the message's; its HP-Outer
	// fields and hp parameter were for the way here.
	out = RestoreHeaderProtection(out)
	out, eightBit, err := checkContent(out)
	if err != nil {
		return failed(info, fmt.Errorf("decrypted content: %w", err))
	}
	trace := traceFields(header)
	if len(trace) > 0 {
		var traceEight bool
		if trace, traceEight, err = checkContent(trace); err != nil {
			return failed(info, fmt.Errorf("outer trace fields: %w", err))
		}
		eightBit = eightBit || traceEight
	}
	return OpenResult{Outcome: Opened, Message: out, Trace: trace, EightBit: eightBit, Where: t.where, Info: info}
}
