package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/policy"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// work does whatever message id needs now and returns when it next needs
// work (zero: it has left the queue).
func (g *Gateway) work(ctx context.Context, id string, force bool) time.Time {
	env, err := g.spool.Load(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return time.Time{}
		}
		g.log.Error("cannot read queued message; retrying later", "queue_id", id, "err", err)
		return time.Now().Add(g.Config().Queue.MinBackoff.D())
	}
	if !env.QuarantinedAt.IsZero() {
		// A move to the quarantine that a crash interrupted and recovery
		// could not finish: the message belongs to the quarantine, so it
		// is neither delivered nor opened again; the next start retries
		// the move.
		g.log.Error("message is half-way to the quarantine; not processed until a restart finishes the move", "queue_id", id)
		return time.Now().Add(g.Config().Queue.MaxBackoff.D())
	}
	// A work marker outlives the process if the pass kills it (out of
	// memory, a crash in a parser): a message that did so twice is moved
	// to the quarantine instead of being replayed at every start.
	starts, err := g.spool.BeginWork(id)
	if err != nil {
		g.log.Error("cannot record the start of work on a message; retrying later", "queue_id", id, "err", err)
		return time.Now().Add(g.Config().Queue.MinBackoff.D())
	}
	defer g.spool.EndWork(id)
	if starts >= poisonStarts {
		reason := fmt.Sprintf("processing stopped the gateway %d times (a crash or out of memory); kept here instead of replayed at every start", starts)
		if err := g.quarantine(env, newVersions(g, id), policy.DirectionOf(g.Config(), env.Sender, env.Trusted), reason); err != nil {
			g.log.Error("cannot move a message that stopped the gateway to the quarantine; retrying later", "queue_id", id, "err", err)
			return time.Now().Add(g.Config().Queue.MinBackoff.D())
		}
		return time.Time{}
	}
	vs := newVersions(g, id)
	if needsMemory(env, force) {
		// The policy step and a held copy's sealing hold the message
		// whole (and a small message's versions stay in memory until
		// delivered): reserve it all first.
		n, err := g.reserveMemory(ctx, env.Size)
		if err != nil {
			return nextDue(env) // shutting down
		}
		defer g.memory.release(n)
	}
	if env.Stage == spool.StageReceived {
		if !force && env.NextAttempt.After(time.Now()) {
			return env.NextAttempt
		}
		if err := g.discover(ctx, g.state.Load(), id, foreignDomains(g.state.Load(), env, false)); err != nil {
			return g.routeFailed(env, err)
		}
		done, err := g.route(env, vs)
		if err != nil {
			return g.routeFailed(env, err)
		}
		if done {
			return time.Time{}
		}
	}
	if g.stopped.Load() {
		// Versions still in memory are dropped: the envelope on disk says
		// "received", and the next start repeats the policy step.
		return nextDue(env)
	}
	// A held domain's certificate may have been published in DNS since.
	_ = g.discover(ctx, g.state.Load(), id, foreignDomains(g.state.Load(), env, true))
	g.retryHolds(env, force)
	next, err := g.deliver(ctx, env, force, vs)
	vs.release()
	if err != nil {
		// Only a message relayed first can fail to be stored; this one is
		// in the spool already.
		g.log.Error("cannot record the attempt", "queue_id", id, "err", err)
		return time.Now().Add(g.Config().Queue.MinBackoff.D())
	}
	return next
}

// poisonStarts is how many passes over a message may end with the death of
// the gateway before the message is taken out of the queue: one crash can
// be chance (a kill -9, the machine), two in a row on the same message are
// the message.
const poisonStarts = 2

// needsMemory reports whether a pass over env reads the message whole: the
// policy step, or the sealing of a held version that is due.
func needsMemory(env *spool.Envelope, force bool) bool {
	if env.Stage == spool.StageReceived {
		return force || !env.NextAttempt.After(time.Now())
	}
	now := time.Now()
	for i := range env.Versions {
		if env.Versions[i].Action == spool.ActionHold && (force || holdDue(&env.Versions[i], now)) {
			return true
		}
	}
	return false
}

// reserveMemory reserves a pass's memory for a message of size bytes,
// waiting while the budget is spent, and returns the bytes to release.
func (g *Gateway) reserveMemory(ctx context.Context, size int64) (int64, error) {
	want := passMemory(size)
	if n, ok := g.memory.tryAcquire(want); ok {
		return n, nil
	}
	g.metrics.memoryWaits.Inc()
	return g.memory.acquire(ctx, want)
}

// classify runs the policy for an envelope.
func classify(st *state, env *spool.Envelope) *policy.Plan {
	rcpts := make([]string, len(env.Recipients))
	for i, r := range env.Recipients {
		rcpts[i] = r.Addr
	}
	return policy.Classify(st.cfg, st.certs, env.Sender, env.Trusted, rcpts)
}

// route is the policy step: it turns a received original into versions, one
// per treatment. A small message's versions stay in memory for the first
// delivery attempt (see fastPathMax); a large one's are committed at once
// with one envelope update. done is true when the message left the queue
// instead (quarantined or refused).
func (g *Gateway) route(env *spool.Envelope, vs *versions) (done bool, err error) {
	st := g.state.Load()
	plan := classify(st, env)
	if err := discoveryDeferred(plan); err != nil {
		if serr := vs.ensureStored(); serr != nil {
			return false, serr
		}
		return false, err
	}

	if plan.Mixed() && st.cfg.Policy.MixedRecipients == "reject" {
		// Accepted before the policy said "reject" (a reload in between):
		// nothing may be sent, so every recipient is bounced.
		g.logDecision(env, plan.Direction, "reject", "", nil, "", "mixed secured and unsecured recipients")
		if err := vs.ensureStored(); err != nil {
			return false, err
		}
		return true, g.refuseAll(env, mixedRejection(plan))
	}

	// A message relayed first is in memory and must stay intact there: it
	// is what goes to the spool if some recipient is not done at once.
	data, mustKeep := vs.original, vs.original != nil
	if !mustKeep {
		var err error
		if data, err = g.readOriginal(env.ID); err != nil {
			return false, fmt.Errorf("reading the message: %w", err)
		}
	}
	// Versions of a message that is not in the spool cannot go there
	// before it, so they stay in memory whatever their size.
	fast := len(data) <= fastPathMax || !vs.stored
	// The last seal of the pass may encrypt the original in place: nothing
	// reads the in-memory copy after it (pass copies are read from the
	// spool). Every earlier seal works on a copy.
	lastSeal := -1
	for i, grp := range plan.Groups {
		if grp.Action == policy.Encrypt && !mustKeep {
			lastSeal = i
		}
	}
	// Opening may decrypt in place; keep the original intact when the
	// same pass also seals it for a partner, or when it must be kept.
	openData := data
	if plan.Direction == policy.Inbound && (plan.Secured() || mustKeep) {
		openData = bytes.Clone(data)
	}

	// A message sealed for several partners that want our signature is
	// signed once (RFC 3183 section 3: the signature covers the original,
	// the same for every copy).
	prep := &signPrep{}
	var versions []spool.Version
	for gi, grp := range plan.Groups {
		rcpts := deliveries(env, grp.Recipients)
		switch grp.Action {
		case policy.Local:
			v, quarantined, err := g.openInbound(env, plan.Direction, openData, rcpts, grp.Domain, vs, fast)
			if err != nil {
				return false, err
			}
			if quarantined {
				return true, nil
			}
			versions = append(versions, v)
		case policy.Encrypt:
			v, err := g.seal(env, data, gi == lastSeal, grp.Domain, grp.Match, grp.Policy, rcpts, vs, fast, prep)
			if err != nil {
				return false, err
			}
			versions = append(versions, v)
			g.logDecision(env, plan.Direction, "encrypt", grp.Domain, v.Fingerprints, v.Cipher, prep.note(grp.Policy.Sign))
		case policy.Hold:
			lastErr, why := "no usable certificate for "+grp.Domain+", which requires encryption", "partner requires encryption and has no usable certificate"
			if grp.Policy.RequirePQ {
				lastErr, why = "no usable post-quantum (ML-KEM or composite) certificate for "+grp.Domain+", which requires one (require_pq)", "partner requires post-quantum encryption and has no usable ML-KEM or composite certificate"
			}
			if grp.Match.Deferred != "" {
				why += ": " + grp.Match.Deferred
				lastErr += ": " + grp.Match.Deferred
			}
			for i := range rcpts {
				rcpts[i].NextAttempt = time.Now().Add(st.cfg.Queue.MinBackoff.D())
				rcpts[i].LastError = lastErr
			}
			versions = append(versions, spool.Version{Action: spool.ActionHold, Domain: grp.Domain, Recipients: rcpts})
			g.logDecision(env, plan.Direction, "hold", grp.Domain, nil, "", why)
		case policy.Pass:
			versions = append(versions, spool.Version{Action: spool.ActionPass, Domain: grp.Domain, Recipients: rcpts})
			g.logDecision(env, plan.Direction, "pass", grp.Domain, nil, "", "")
		case policy.Refuse:
			// The receiver refuses these at RCPT; whatever reaches the
			// policy another way (a spool written by an older version) is
			// bounced, never looked up or passed.
			reason := "the domain " + grp.Domain + " is not a valid IDNA domain name (RFC 5891); no policy can be applied to it"
			v := spool.Version{Action: spool.ActionRefuse, Domain: grp.Domain, Recipients: rcpts}
			var failed []failure
			for i := range v.Recipients {
				v.Recipients[i].State = spool.Bounced
				v.Recipients[i].LastError = reason
				failed = append(failed, ownFailure(v.Recipients[i], smtp.EnhancedCode{5, 1, 3}, reason))
			}
			if err := vs.ensureStored(); err != nil {
				return false, err
			}
			if err := g.bounce(env, &v, failed, false); err != nil {
				return false, fmt.Errorf("bouncing recipients in %s: %w", grp.Domain, err)
			}
			versions = append(versions, v)
			g.logDecision(env, plan.Direction, "refuse", grp.Domain, nil, "", reason)
		}
	}
	env.Stage = spool.StageRouted
	env.Versions = mergePass(versions)
	env.LastError = ""
	if fast {
		return false, nil // committed after the first attempt, if still needed
	}
	if err := g.spool.Update(env); err != nil {
		return false, fmt.Errorf("committing the versions: %w", err)
	}
	return false, nil
}

// mergePass joins the pass versions of several domains into one, since
// they share the same bytes (the courier groups recipients by next hop).
func mergePass(vs []spool.Version) []spool.Version {
	var out []spool.Version
	passAt := -1
	for _, v := range vs {
		if v.Action == spool.ActionPass && v.Data == "" {
			if passAt >= 0 {
				out[passAt].Recipients = append(out[passAt].Recipients, v.Recipients...)
				out[passAt].Domain = ""
				continue
			}
			passAt = len(out)
		}
		out = append(out, v)
	}
	return out
}

// deliveries makes the pending delivery records for the given recipients.
func deliveries(env *spool.Envelope, idx []int) []spool.Delivery {
	out := make([]spool.Delivery, 0, len(idx))
	for _, i := range idx {
		out = append(out, spool.Delivery{Recipient: env.Recipients[i], State: spool.Pending})
	}
	return out
}

// openInbound handles the recipients in local domains: an inbound message
// encrypted to one of our certificates is opened (draft 5.2); one that
// cannot be opened goes to the quarantine and is never relayed (draft
// section 5.2 step 2). An
// opened message, and a plain one from a partner domain, is checked for a
// domain signature (signature.go): the verdict is written for the
// recipient, require_signature and require_aead may send it to the
// quarantine instead, and fields that claim to be ours are removed from
// every message.
func (g *Gateway) openInbound(env *spool.Envelope, dir policy.Direction, data []byte, rcpts []spool.Delivery, domain string, vs *versions, fast bool) (v spool.Version, quarantined bool, err error) {
	st := g.state.Load()
	// Whatever the direction: mail to a local domain that is encrypted to
	// one of our certificates is opened or quarantined (draft section 5.2),
	// never relayed inward still encrypted because its sender claimed to be
	// one of ours.
	o := openInbound(st, env, data, time.Now())
	g.countForged(env, o.judged)
	switch o.Outcome {
	case smime.NotEncrypted:
		return g.plainInbound(st, env, dir, data, rcpts, domain, vs, fast, "not encrypted")
	case smime.NotForUs:
		return g.plainInbound(st, env, dir, data, rcpts, domain, vs, fast, "encrypted, not to one of our certificates")
	case smime.KeyUnavailable:
		// Ours, but the key is not loaded: never passed (it is for us),
		// never quarantined (it may open fine once the key is readable).
		// The policy step is retried with backoff, like any temporary
		// failure, and the operator is told at every attempt.
		g.metrics.ownKeyUnavailable.Inc()
		g.log.Error("inbound message encrypted to our certificate whose private key is not loaded; it waits in the queue", "queue_id", env.ID, "reason", o.Err)
		if err := vs.ensureStored(); err != nil {
			return v, false, err
		}
		return v, false, fmt.Errorf("encrypted to our certificate whose private key is not loaded: %w", o.Err)
	}
	if !o.Ready() {
		return v, true, g.quarantine(env, vs, dir, o.Quarantine)
	}
	in := o.judged
	g.harvest(st, env, in.result)
	name, err := vs.write(fast, o.Size(), func(w io.Writer) error {
		_, err := o.WriteTo(w)
		return err
	})
	if err != nil {
		return v, false, err
	}
	g.metrics.decisions.WithLabelValues("decrypt").Inc()
	g.metrics.verdicts.WithLabelValues(string(in.result.Verdict)).Inc()
	g.logDecision(env, dir, "decrypt", domain, []string{o.Fingerprint}, o.Info.Cipher, verdictNote(in))
	return spool.Version{Data: name, Action: spool.ActionDecrypt, Domain: domain, Fingerprints: []string{o.Fingerprint}, Cipher: o.Info.Cipher, EightBit: o.EightBit, Recipients: rcpts}, false, nil
}

// plainInbound relays mail to local recipients that was not opened: as it
// came, unless a forged field of ours had to go, or a partner's signature
// was checked (then with our verdict, and without the domain layer it
// verified), or require_signature sends it to the quarantine.
func (g *Gateway) plainInbound(st *state, env *spool.Envelope, dir policy.Direction, data []byte, rcpts []spool.Delivery, domain string, vs *versions, fast bool, note string) (spool.Version, bool, error) {
	pass := spool.Version{Action: spool.ActionPass, Domain: domain, Recipients: rcpts}
	in, err := g.judgeInbound(st, env, data, false)
	if err != nil {
		return spool.Version{}, true, g.quarantine(env, vs, dir, err.Error())
	}
	if in.quarantine != "" {
		return spool.Version{}, true, g.quarantine(env, vs, dir, in.quarantine)
	}
	if !in.changed && !in.checked {
		g.logDecision(env, dir, "pass", domain, nil, "", note)
		return pass, false, nil
	}
	if in.checked {
		g.harvest(st, env, in.result)
	}
	// Our Received field stays first; the verdict follows it, then the
	// other trace fields and the message.
	ours, body := traceAndRest(in.message)
	var others []byte
	if in.trace != nil {
		ours, others = traceAndRest(in.trace)
		body = in.message
	}
	var ar string
	if in.checked {
		ar = authResultsField(st.cfg.Hostname, in.result, nil)
		g.metrics.verdicts.WithLabelValues(string(in.result.Verdict)).Inc()
	}
	name, err := vs.write(fast, len(ours)+len(ar)+len(others)+len(body), func(w io.Writer) error {
		for _, part := range [][]byte{ours, []byte(ar), others, body} {
			if _, err := w.Write(part); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return spool.Version{}, false, err
	}
	pass.Data = name
	g.logDecision(env, dir, "pass", domain, nil, "", note+"; "+verdictNote(in))
	return pass, false, nil
}

// verdictNote is the decision log's account of the signature check.
func verdictNote(in *inbound) string {
	r := in.result
	switch {
	case !in.checked:
		return "forged fields removed"
	case r.Verdict == smime.VerdictPass:
		return "smime=pass " + r.Domain
	case r.Reason != "":
		return "smime=" + string(r.Verdict) + " (" + r.Reason + ")"
	}
	return "smime=" + string(r.Verdict)
}

// openOptions are the inbound step's options for smime.Open and
// smime.Inspect, which must be the same for both.
func openOptions(cfg *config.Config) smime.OpenOptions {
	return smime.OpenOptions{
		MaxSize:        cfg.SMTP.MaxMessageBytes * 2,
		Allow3DES:      cfg.Policy.Allow3DES,
		MaxHeaderBytes: max(cfg.SMTP.MaxHeaderBytes, smime.DefaultMaxHeaderBytes),
	}
}

// quarantine moves the message to the quarantine with the reason (a
// message relayed first goes to the spool first).
func (g *Gateway) quarantine(env *spool.Envelope, vs *versions, dir policy.Direction, reason string) error {
	if full, why := g.quarantineFull(); full {
		// Never dropped, never relayed: the message waits in the queue
		// (the policy step is retried with backoff) until the operator
		// makes room or quarantine.lifetime expires old entries.
		g.metrics.quarantineFull.Inc()
		if err := vs.ensureStored(); err != nil {
			return err
		}
		return fmt.Errorf("the quarantine is full (%s); the message waits in the queue: %s", why, reason)
	}
	if err := vs.ensureStored(); err != nil {
		return err
	}
	if err := g.spool.Quarantine(env, reason); err != nil {
		return fmt.Errorf("quarantining: %w", err)
	}
	g.metrics.quarantined.Inc()
	g.metrics.decisions.WithLabelValues("quarantine").Inc()
	g.log.Warn("decision", "queue_id", env.ID, "direction", string(dir), "action", "quarantine", "reason", reason)
	return nil
}

// quarantineFull reports whether quarantine.max_messages or
// quarantine.max_bytes is reached, and which.
func (g *Gateway) quarantineFull() (bool, string) {
	cfg := g.Config()
	n, b := g.spool.QuarantineUsage()
	switch {
	case n >= cfg.Quarantine.MaxMessages:
		return true, fmt.Sprintf("%d messages, quarantine.max_messages is %d", n, cfg.Quarantine.MaxMessages)
	case b >= cfg.Quarantine.MaxBytes:
		return true, fmt.Sprintf("%d bytes, quarantine.max_bytes is %d", b, cfg.Quarantine.MaxBytes)
	}
	return false, ""
}

// seal makes the encrypted version for one partner domain.
// With inPlace, data itself is encrypted (and so destroyed); else a copy.
func (g *Gateway) seal(env *spool.Envelope, data []byte, inPlace bool, domain string, m certstore.Match, pp config.PartnerPolicy, rcpts []spool.Delivery, vs *versions, fast bool, prep *signPrep) (spool.Version, error) {
	st := g.state.Load()
	opts, fps, err := SealOptions(st.cfg, m, pp)
	if err != nil {
		return spool.Version{}, err
	}
	if pp.Sign {
		// Signed, then encrypted (RFC 8551 section 3.7), or not sent:
		// without a certificate that can sign, the message waits.
		if err := prep.prepare(st, env, data, &opts); err != nil {
			return spool.Version{}, fmt.Errorf("sealing for %s, which wants our domain signature: %w", domain, err)
		}
	}
	// Seal builds the payload and encrypts it in place: unless this is
	// the last use of data, give it a copy with room for the payload's
	// framing and the GCM tag, so the original stays intact for the other
	// domains' versions.
	ours, _ := traceAndRest(data)
	trace := bytes.Clone(ours)
	need := smime.SealCapacity(data, opts)
	buf := data
	if !inPlace || cap(data) < need {
		buf = getBuffer(need)[:len(data)]
		copy(buf, data)
		defer putBuffer(buf) // encrypted in place, and written out by Seal
	}
	name, err := vs.write(fast, sealedSize(need, len(opts.Recipients)), func(w io.Writer) error {
		// Our Received field (the receiver put it first) also stands on the
		// outer message: every copy that leaves carries our trace.
		if _, err := w.Write(trace); err != nil {
			return err
		}
		if err := smime.Seal(w, buf, opts); err != nil {
			return fmt.Errorf("sealing for %s: %w", domain, err)
		}
		return nil
	})
	if err != nil {
		return spool.Version{}, err
	}
	g.metrics.decisions.WithLabelValues("encrypt").Inc()
	return spool.Version{Data: name, Action: spool.ActionEncrypt, Domain: domain, Fingerprints: fps, Cipher: opts.Cipher.String(), Recipients: rcpts}, nil
}

// SealOptions turns a certificate match and a partner policy into the
// options of smime.Seal: every usable certificate of the domain is a
// recipient (a key rotation in progress). It returns the certificates'
// fingerprints too, for the decision log. The gateway and `smimegate
// encrypt` both build their options here, so that the offline command
// seals as the gateway does.
func SealOptions(cfg *config.Config, m certstore.Match, pp config.PartnerPolicy) (smime.SealOptions, []string, error) {
	cipher, err := cms.ParseCipher(pp.Cipher)
	if err != nil {
		return smime.SealOptions{}, nil, err
	}
	padding, err := cms.ParseRSAPadding(pp.RSAPadding)
	if err != nil {
		return smime.SealOptions{}, nil, err
	}
	opts := smime.SealOptions{Cipher: cipher, ProtectSubject: cfg.Policy.ProtectSubject}
	var fps []string
	for _, c := range m.Certs {
		opts.Recipients = append(opts.Recipients, cms.Recipient{Cert: c.X509, RSAPadding: padding, UseSKI: pp.KeyID == "ski"})
		fps = append(fps, c.Fingerprint)
	}
	return opts, fps, nil
}

// routeFailed records a failure of the policy step (a full disk, say): the
// message stays as received and the step is retried with backoff, then
// bounced when the queue lifetime is over.
func (g *Gateway) routeFailed(env *spool.Envelope, err error) time.Time {
	cfg := g.Config()
	env.Attempts++
	env.LastError = err.Error()
	if time.Since(env.Arrival) > cfg.Queue.Lifetime.D() {
		g.log.Error("policy step failed until the queue lifetime ran out; bouncing", "queue_id", env.ID, "err", err)
		if berr := g.refuseAll(env, "message could not be processed: "+err.Error()); berr != nil {
			g.log.Error("cannot bounce", "queue_id", env.ID, "err", berr)
		}
		return time.Time{}
	}
	env.NextAttempt = time.Now().Add(backoff(cfg, env.Attempts))
	g.log.Error("policy step failed; will retry", "queue_id", env.ID, "attempt", env.Attempts, "next_attempt", env.NextAttempt.Format(time.RFC3339), "err", err)
	if uerr := g.spool.Update(env); uerr != nil {
		g.log.Error("cannot record the failure", "queue_id", env.ID, "err", uerr)
	}
	return env.NextAttempt
}

// refuseAll bounces every recipient of a received message with the reason
// and removes it from the queue.
func (g *Gateway) refuseAll(env *spool.Envelope, reason string) error {
	v := spool.Version{Action: spool.ActionRefuse, Recipients: deliveries(env, seq(len(env.Recipients)))}
	var failed []failure
	for i := range v.Recipients {
		v.Recipients[i].State = spool.Bounced
		v.Recipients[i].LastError = reason
		failed = append(failed, ownFailure(v.Recipients[i], smtp.EnhancedCode{5, 7, 1}, reason))
	}
	if err := g.bounce(env, &v, failed, false); err != nil {
		return err
	}
	return g.spool.Remove(env.ID)
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// logDecision writes the one structured line per decision.
func (g *Gateway) logDecision(env *spool.Envelope, dir policy.Direction, action, domain string, fps []string, cipher, reason string) {
	attrs := []any{"queue_id", env.ID, "direction", string(dir), "action", action}
	if domain != "" {
		attrs = append(attrs, "domain", domain)
	}
	if len(fps) > 0 {
		attrs = append(attrs, "cert_sha256", "["+strings.Join(fps, " ")+"]") // as fmt prints a slice, without its reflection
	}
	if cipher != "" {
		attrs = append(attrs, "cipher", cipher)
	}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	if action == "pass" {
		g.metrics.decisions.WithLabelValues("pass").Inc()
	}
	g.log.Info("decision", attrs...)
}

func mixedRejection(p *policy.Plan) string { return policy.MixedRejection(p) }

// readOriginal reads a message's original into a buffer with room for the
// GCM tag, so that the last seal can work in place without another copy.
func (g *Gateway) readOriginal(id string) ([]byte, error) {
	f, err := g.spool.OpenData(id, "")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, f.Size(), f.Size()+smime.SealSpare)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// sealedSize is a bound on the size of a message of n bytes sealed for
// recipients certificates, so that its buffer is allocated once: the
// content plus the CMS structure (a recipient info is at most about 1 KiB
// for RSA-4096, and 2.2 KiB for a KEMRecipientInfo of
// id-MLKEM1024-RSA3072, whose kemct alone is 1,952 bytes), as base64
// lines of 76 characters and CRLF (78 bytes for every 57), plus our trace
// field and the outer header. An estimate that falls short makes the
// buffer double, and 100 messages of 1 MiB at once then peaked at 410 MiB
// instead of 210.
func sealedSize(n, recipients int) int {
	cms := n + 1024 + 2560*recipients
	return (cms+56)/57*78 + 8192
}
