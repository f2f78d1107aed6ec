package smime

import (
	"errors"
	"fmt"

	"smimegate/internal/cms"
)

// Outcome is what Open made of a message. The three outcomes of an
// encrypted message are kept apart because the gateway treats them
// differently (draft-ramsdell section 5.2).
type Outcome int

const (
	// NotEncrypted: not an encrypted S/MIME message; relay it unaltered.
	NotEncrypted Outcome = iota
	// NotForUs: encrypted, but to none of our certificates (end-to-end
	// S/MIME to a user); relay it unaltered.
	NotForUs
	// Opened: encrypted to us and decrypted; relay Message.
	Opened
	// Failed: encrypted (to us, or unreadable) and could not be opened;
	// never relay it (draft-ramsdell section 5.2 step 2): quarantine it
	// with Err as the reason.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case NotEncrypted:
		return "not-encrypted"
	case NotForUs:
		return "not-for-us"
	case Opened:
		return "opened"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

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
	// RequireAEAD makes unauthenticated CBC content a failure
	// (policy.require_aead): CBC is malleable (EFAIL).
	RequireAEAD bool
	// MaxSize refuses larger sealed messages before anything is
	// allocated for them; 0 means DefaultMaxSize.
	MaxSize int64
}

// OpenResult is the outcome of Open.
type OpenResult struct {
	Outcome Outcome
	Message []byte    // Opened: the message to relay
	Info    *cms.Info // Opened (and Failed after decryption): what was used
	// Err says why for Failed, and carries cms.ErrNotForUs for NotForUs.
	Err error
}

// Open recognises an encrypted message (see detect for the forms accepted)
// and opens it with one of keys. msg is never modified, so a message that
// is not opened can be relayed or quarantined as it came.
//
// Memory (see the package comment): one decoded buffer of at most 3/4 of
// msg for base64 or len(msg) for a binary body, in which cms.Decrypt works
// in place, and for a peer that encrypted only a body part, one copy of the
// plaintext with the outer header joined to it. AES-GCM authenticates the
// whole content before releasing any of it, so this cannot be streamed;
// input larger than opts.MaxSize is refused with ErrTooLarge.
func Open(msg []byte, keys []cms.KeyPair, opts OpenOptions) OpenResult {
	header, body := splitHeader(msg)
	h, _ := readOuterHeader(header)
	f, ok := detect(h)
	if !ok {
		return OpenResult{Outcome: NotEncrypted}
	}
	failed := func(err error) OpenResult {
		return OpenResult{Outcome: Failed, Err: fmt.Errorf("smime: open %s: %w", f.mediaType, err)}
	}
	maxSize := opts.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if int64(len(msg)) > maxSize {
		return failed(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), maxSize))
	}
	der, err := decodeBody(body, f.cte)
	if err != nil {
		if !f.declared {
			return OpenResult{Outcome: NotEncrypted}
		}
		return failed(err)
	}
	kind, total := peekContentInfo(der)
	switch {
	case kind == cmsOther:
		// A signed or compressed message whose smime-type was missing.
		return OpenResult{Outcome: NotEncrypted}
	case kind == notCMS && !f.declared:
		return OpenResult{Outcome: NotEncrypted}
	case kind == notCMS:
		return failed(fmt.Errorf("%w: the body is not a CMS ContentInfo", cms.ErrMalformed))
	}
	if total > 0 && total < len(der) {
		// Line ends or padding that an MTA appended after a binary body.
		der = der[:total]
	}
	pt, info, err := cms.Decrypt(der, keys, cms.DecryptOptions{Allow3DES: opts.Allow3DES, MaxSize: maxSize})
	if errors.Is(err, cms.ErrNotForUs) {
		return OpenResult{Outcome: NotForUs, Err: err}
	}
	if err != nil {
		return failed(err)
	}
	if opts.RequireAEAD && !info.AEAD {
		r := failed(fmt.Errorf("content cipher %s is not authenticated and policy.require_aead is set", info.Cipher))
		r.Info = info
		return r
	}
	out, err := unwrap(pt, h)
	if err != nil {
		r := failed(err)
		r.Info = info
		return r
	}
	return OpenResult{Outcome: Opened, Message: out, Info: info}
}
