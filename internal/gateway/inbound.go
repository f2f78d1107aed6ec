package gateway

import (
	"fmt"
	"io"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/smime"
	"smimegate/internal/spool"
)

// Opened is the inbound step's decision for a message to local recipients
// that may be encrypted to us (draft-ramsdell section 5.2), made without
// side effects: nothing is logged, counted, harvested or written. The
// gateway acts on it (quarantine, wait, write the copy); `smimegate
// decrypt` prints it. Both get it from openInbound, so that the offline
// command opens, judges and rewrites a message exactly as the gateway
// does: the same limits, the same sender rules, the same fields.
type Opened struct {
	// Outcome is smime.Open's. For NotEncrypted and NotForUs the message
	// is plain mail to the inbound step and nothing else is set.
	Outcome smime.Outcome
	// Quarantine, when not "", is why the message goes to the quarantine
	// and is never relayed: it could not be opened (Failed), or it was
	// opened and a policy check refused it (require_signature,
	// require_aead, a verified message that cannot be rebuilt).
	Quarantine string
	// Err is why for KeyUnavailable (the message waits) and Failed.
	Err error
	// Where names the encrypted part the outcome is about (smime.Open's).
	Where string
	// Info and Fingerprint name what opened it (Opened).
	Info        *cms.Info
	Fingerprint string
	// EightBit says the copy has 8-bit content (BODY=8BITMIME).
	EightBit bool

	// parts are the copy for the recipients, for Opened without
	// Quarantine: our Received field, our verdict, the outer trace
	// fields, then the message that was inside. Kept apart so that
	// writing it costs no copy of the message.
	parts [][]byte
	// judged is the signature check, for the gateway's harvest, metrics
	// and log.
	judged *inbound
}

// Ready reports whether the message was opened and passed every check: its
// copy (WriteTo) goes to the recipients.
func (o *Opened) Ready() bool { return o.Outcome == smime.Opened && o.Quarantine == "" }

// Size is the length of the copy WriteTo writes.
func (o *Opened) Size() int {
	n := 0
	for _, p := range o.parts {
		n += len(p)
	}
	return n
}

// WriteTo writes the copy for the recipients; nothing unless Ready.
func (o *Opened) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, p := range o.parts {
		k, err := w.Write(p)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// OpenInbound is the inbound step of the gateway for msg as received in
// env, under cfg and the certificates of certs, at now: what `smimegate
// decrypt` runs. env supplies the queue id (in our Received field) and the
// envelope sender (one of the domains the per-partner settings are looked
// up for).
func OpenInbound(cfg *config.Config, certs *certstore.Store, env *spool.Envelope, msg []byte, now time.Time) *Opened {
	return openInbound(newState(cfg, certs), env, msg, now)
}

// newState is the gateway's view of a configuration and its certificates:
// our keys (those whose key is not loaded included, so that mail to them
// waits rather than passes) and the certificates we hold for signers.
func newState(cfg *config.Config, certs *certstore.Store) *state {
	st := &state{cfg: cfg, certs: certs, signerCerts: certs.HeldCertificates()}
	for _, c := range certs.Own() {
		st.ownKeys = append(st.ownKeys, cms.KeyPair{Cert: c.X509, Key: c.Key})
		st.ownCerts = append(st.ownCerts, c.X509)
	}
	return st
}

// openInbound opens msg if it is encrypted to us and judges what was inside
// (judge); see Opened.
func openInbound(st *state, env *spool.Envelope, msg []byte, now time.Time) *Opened {
	res := smime.Open(msg, st.ownKeys, openOptions(st.cfg))
	o := &Opened{Outcome: res.Outcome, Err: res.Err, Where: res.Where, Info: res.Info}
	switch res.Outcome {
	case smime.NotEncrypted, smime.NotForUs, smime.KeyUnavailable:
		return o
	case smime.Failed:
		o.Quarantine = fmt.Sprintf("cannot decrypt: %v", res.Err)
		return o
	}
	o.Fingerprint = certstore.Fingerprint(res.Info.Cert)
	o.EightBit = res.EightBit
	in, err := judge(st, env, res.Message, true, now)
	if err != nil {
		o.Quarantine = fmt.Sprintf("decrypted, but %v", err)
		return o
	}
	o.judged = in
	if in.quarantine != "" {
		o.Quarantine = in.quarantine
		return o
	}
	// require_aead is keyed on who the message says it is from (the
	// verified signer, the From domains) as well as on the envelope
	// sender, so that a different MAIL FROM does not bypass it.
	if d, required := requiresAEAD(st.cfg, in.domains); !res.Info.AEAD && required {
		o.Quarantine = fmt.Sprintf("unauthenticated %s content refused by policy (require_aead) for %s", res.Info.Cipher, d)
		return o
	}
	dec := &decryption{fingerprint: o.Fingerprint, cipher: res.Info.Cipher, keyTransport: res.Info.KeyTransport}
	// Our own trace field and our verdict, then the outer message's trace
	// fields (ours from the receiver with the client's address among
	// them: RFC 5321 section 4.4 forbids deleting trace fields), then the
	// message that was inside.
	head := receivedAt(st.cfg.Hostname, env.ID, "decrypted", now) + authResultsField(st.cfg.Hostname, in.result, dec) + decryptedFieldText(st.cfg.Hostname, dec)
	o.parts = [][]byte{[]byte(head), res.Trace, in.trace, in.message}
	return o
}

// receivedAt is our trace field for a copy that we rewrote (an opened
// inbound message), RFC 5321 section 4.4: who, why, the queue id and when.
func receivedAt(hostname, id, note string, now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: by ")
	b.WriteString(hostname)
	fmt.Fprintf(&b, " (smimegate, %s)\r\n\tid %s; %s\r\n", note, id, now.Format(time.RFC1123Z))
	return b.String()
}
