package certstore

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Revocation learns whether certificates are revoked, from their issuers'
// OCSP responders (RFC 6960) first and CRLs (RFC 5280) as the fallback,
// keeps the answers (in memory and in a cache directory, so that a restart
// does not fetch everything again) and refreshes them in the background
// before they expire.
//
// A Store asks it at every lookup, and the answer is always what is known
// now: nothing in a lookup waits for the network, so an SMTP session never
// waits for a responder. Fetches happen in Run (the background loop) and
// CheckNow (at start-up and SIGHUP), each with a timeout and a size bound.
//
// One Revocation outlives the Stores that use it (a reload builds a new
// Store, the answers stay). It is safe for concurrent use.
type Revocation struct {
	opts  RevocationOptions
	fetch *fetcher
	kick  chan struct{}
	// crlSlots bounds the CRLs being read at once: each holds its DER (up
	// to maxCRLBytes) and builds its index.
	crlSlots chan struct{}

	mu       sync.Mutex
	mode     RevocationMode
	grace    time.Duration
	maxAge   time.Duration
	subjects map[string]*revSubject
	groups   map[string][]string // subject keys by the group that tracks them
	crls     map[string]*crlState
	seen     map[string]time.Time // first-checked times (state.json)
	dirty    bool                 // seen changed since it was written

	cacheProblem string // why the cache could not be read, for CacheProblem

	// signers are the chains of domain signers seen lately (TrustSigner),
	// tracked like the loaded certificates' under the group "signers";
	// signerOrder is their arrival order, for the bound maxSigners.
	signers     map[string][]revPair
	signerOrder []string
}

// maxSigners bounds the signer chains tracked: signers are the partners'
// CA-issued signing certificates, a handful per partner, and the bound keeps
// a stream of signatures by new certificates from growing the set (the
// oldest is dropped, and checked again if it signs again).
const maxSigners = 1024

// trackSigner adds the chain of a domain signer (keyed by its
// fingerprint) to what is checked in the background, and returns what is
// known of it now. A signer seen for the first time is "not checked yet":
// within certs.revocation_grace that does not stop it under strict, and the
// background check that the call wakes settles it within seconds.
func (r *Revocation) trackSigner(fp string, pairs []revPair, now time.Time) RevocationInfo {
	r.mu.Lock()
	if r.signers == nil {
		r.signers = map[string][]revPair{}
	}
	if _, ok := r.signers[fp]; !ok {
		r.signers[fp] = pairs
		r.signerOrder = append(r.signerOrder, fp)
		for len(r.signerOrder) > maxSigners {
			delete(r.signers, r.signerOrder[0])
			r.signerOrder = r.signerOrder[1:]
		}
	}
	var all []revPair
	for _, k := range r.signerOrder {
		all = append(all, r.signers[k]...)
	}
	r.mu.Unlock()
	r.track("signers", all)
	return r.status(pairs, now)
}

// RevocationMode is certs.revocation.
type RevocationMode int

// The modes of certs.revocation.
const (
	// RevocationOff: no certificate is checked.
	RevocationOff RevocationMode = iota
	// RevocationSoft: only a known revocation makes a certificate unusable.
	RevocationSoft
	// RevocationStrict: a revocation makes a certificate unusable at once,
	// and so does a status that could not be learnt for longer than the
	// grace period, or that can never be learnt.
	RevocationStrict
)

// ParseRevocationMode reads certs.revocation.
func ParseRevocationMode(s string) (RevocationMode, error) {
	switch s {
	case "off":
		return RevocationOff, nil
	case "soft":
		return RevocationSoft, nil
	case "strict", "":
		return RevocationStrict, nil
	}
	return 0, fmt.Errorf("revocation mode %q is not one of strict, soft, off", s)
}

func (m RevocationMode) String() string {
	return [...]string{"off", "soft", "strict"}[m]
}

// RevocationOptions configure a Revocation.
type RevocationOptions struct {
	Mode   RevocationMode
	Grace  time.Duration // certs.revocation_grace; 0 is DefaultRevocationGrace
	MaxAge time.Duration // certs.revocation_max_age; 0 is DefaultRevocationMaxAge
	// Dir is the cache directory (state_dir/revocation); "" keeps the
	// answers in memory only.
	Dir string
	// ReadOnly reads the cache but never writes it: the commands that
	// show the status (`cert list`, `check-config`) run beside the
	// gateway, perhaps as another user.
	ReadOnly bool
	// Offline fetches nothing: only what the cache says counts.
	Offline bool
	Now     func() time.Time
	Logger  *slog.Logger
	// Client fetches OCSP responses and CRLs; nil is a client with
	// fetchTimeout. Tests give their own.
	Client *http.Client
}

// The defaults of certs.revocation_grace and certs.revocation_max_age.
const (
	DefaultRevocationGrace  = 24 * time.Hour
	DefaultRevocationMaxAge = 7 * 24 * time.Hour
)

// Scheduling of the background refresh.
const (
	// revocationTick is how often Run looks for answers due for refresh.
	revocationTick = time.Minute
	// minRefresh is the shortest wait before an answer is fetched again,
	// however short its validity: a responder that answers with a
	// nextUpdate in the past is not asked in a loop.
	minRefresh = time.Minute
	// maxRetry bounds the backoff after failures (1, 2, 4 ... minutes).
	maxRetry = time.Hour
	// maxConcurrentChecks bounds the fetches in flight at once.
	maxConcurrentChecks = 4
	// maxConcurrentCRLs bounds the CRLs read at once (see crlSlots).
	maxConcurrentCRLs = 2
)

// NewRevocation returns a Revocation and reads its cache directory.
func NewRevocation(opts RevocationOptions) *Revocation {
	if opts.Grace <= 0 {
		opts.Grace = DefaultRevocationGrace
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultRevocationMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Revocation{
		opts:     opts,
		fetch:    newFetcher(opts.Client),
		kick:     make(chan struct{}, 1),
		crlSlots: make(chan struct{}, maxConcurrentCRLs),
		mode:     opts.Mode,
		grace:    opts.Grace,
		maxAge:   opts.MaxAge,
		subjects: map[string]*revSubject{},
		groups:   map[string][]string{},
		crls:     map[string]*crlState{},
	}
	r.openCache()
	return r
}

// SetPolicy changes mode, grace and maximum age (a reload).
func (r *Revocation) SetPolicy(mode RevocationMode, grace, maxAge time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
	if grace > 0 {
		r.grace = grace
	}
	if maxAge > 0 {
		r.maxAge = maxAge
	}
}

// Mode returns the mode in force.
func (r *Revocation) Mode() RevocationMode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// revSubject is one certificate checked against one issuer.
type revSubject struct {
	key          string
	cert, issuer *x509.Certificate
	label        string    // names the certificate in logs
	firstSeen    time.Time // when it was first tracked (persisted)
	ocsp         *revAnswer
	lastErr      string // why the last check learnt nothing current
	lastTry      time.Time
	nextTry      time.Time
	failures     int
	busy         bool
	logged       RevocationState // the state last logged, so that only changes are
}

// revAnswer is one verified answer about one certificate.
type revAnswer struct {
	Revoked    bool
	Source     string // "OCSP http://..." or "CRL http://..."
	ThisUpdate time.Time
	NextUpdate time.Time // zero: none given
	Until      time.Time // trusted until (answerUntil)
	RevokedAt  time.Time
	Reason     int // RFC 5280 CRLReason; -1: none given
	complete   bool
	raw        []byte // the OCSP response, for the cache
}

func (a *revAnswer) current(now time.Time) bool {
	return !a.ThisUpdate.After(now.Add(clockSkew)) && now.Before(a.Until)
}

// crlState is one CRL (a distribution point of one issuer).
type crlState struct {
	key      string
	url      string
	issuer   *x509.Certificate
	ix       *crlIndex
	lastErr  string
	nextTry  time.Time
	failures int
	// fetching is closed when a fetch in flight ends, so that the
	// subjects that share the CRL wait for one fetch instead of each
	// making their own.
	fetching chan struct{}
}

// RevocationState is what is known of a certificate's revocation.
type RevocationState int

// The states, from least to most severe (a chain takes its worst).
const (
	// RevNotChecked: revocation is off, or the certificate has no issuer
	// to ask (a trust anchor, a self-signed own certificate).
	RevNotChecked RevocationState = iota
	// RevGood: a current answer says it is not revoked.
	RevGood
	// RevUnknown: no current answer (fetches failed, or none yet).
	RevUnknown
	// RevNoSource: its issuer names no OCSP responder and no CRL.
	RevNoSource
	// RevRevoked: an answer says it is revoked.
	RevRevoked
)

var revStateNames = [...]string{"not checked", "good", "unknown", "no revocation source", "revoked"}

func (s RevocationState) String() string {
	if s >= 0 && int(s) < len(revStateNames) {
		return revStateNames[s]
	}
	return fmt.Sprintf("revocation(%d)", int(s))
}

// RevocationInfo is what is known of a certificate's revocation status (of
// the worst certificate of its chain), for `cert list`, `cert show` and the
// logs.
type RevocationInfo struct {
	State RevocationState
	// Source is where the answer came from ("OCSP http://...",
	// "CRL http://..."), with its ThisUpdate and the time it is trusted
	// Until.
	Source            string
	ThisUpdate, Until time.Time
	RevokedAt         time.Time
	Reason            string    // the revocation reason, if one was given
	Since             time.Time // RevUnknown: since when nothing current is known
	Err               string    // RevUnknown: why the last fetch learnt nothing
	// Of names the certificate of the chain this is about, when it is not
	// the certificate itself (an intermediate CA).
	Of string
}

// Summary says the revocation status in one line.
func (i RevocationInfo) Summary() string {
	t := func(x time.Time) string { return x.UTC().Format(time.RFC3339) }
	var s string
	switch i.State {
	case RevNotChecked:
		return "not checked"
	case RevGood:
		s = fmt.Sprintf("good per %s of %s, until %s", i.Source, t(i.ThisUpdate), t(i.Until))
	case RevRevoked:
		s = "revoked"
		if !i.RevokedAt.IsZero() {
			s += " on " + t(i.RevokedAt)
		}
		if i.Reason != "" {
			s += " (" + i.Reason + ")"
		}
		s += fmt.Sprintf(" per %s of %s", i.Source, t(i.ThisUpdate))
	case RevNoSource:
		s = "cannot be checked: the issuer names neither an OCSP responder nor an HTTP CRL distribution point"
	case RevUnknown:
		s = "unknown since " + t(i.Since)
		if i.Err != "" {
			s += ": " + i.Err
		}
	}
	if i.Of != "" {
		s = i.Of + ": " + s
	}
	return s
}

// crlReasons are RFC 5280 section 5.3.1's reason names.
var crlReasons = map[int]string{0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise"}

// revPair is a certificate and the issuer it is checked against.
type revPair struct {
	cert, issuer *x509.Certificate
	label        string
	key          string // subjectKey, computed once
}

func subjectKey(cert, issuer *x509.Certificate) string {
	a, b := sha256.Sum256(cert.Raw), sha256.Sum256(issuer.Raw)
	return hex.EncodeToString(a[:]) + "-" + hex.EncodeToString(b[:8])
}

func crlKey(url string, issuer *x509.Certificate) string {
	sum := sha256.Sum256([]byte(url + "\x00" + string(issuer.Raw)))
	return hex.EncodeToString(sum[:16])
}

// track makes pairs the certificates tracked for group (replacing what
// group tracked before); subjects no group tracks any more are dropped.
// New subjects start from the cache, and the background loop is woken.
func (r *Revocation) track(group string, pairs []revPair) {
	keys := make([]string, 0, len(pairs))
	var fresh []*revSubject
	r.mu.Lock()
	for _, p := range pairs {
		k := p.key
		keys = append(keys, k)
		if s, ok := r.subjects[k]; ok {
			s.label = p.label
			continue
		}
		s := &revSubject{key: k, cert: p.cert, issuer: p.issuer, label: p.label, firstSeen: r.firstSeen(k)}
		r.subjects[k] = s
		fresh = append(fresh, s)
	}
	r.groups[group] = keys
	live := map[string]bool{}
	for _, ks := range r.groups {
		for _, k := range ks {
			live[k] = true
		}
	}
	for k := range r.subjects {
		if !live[k] {
			delete(r.subjects, k)
		}
	}
	r.mu.Unlock()
	for _, s := range fresh {
		r.loadCached(s)
	}
	if len(fresh) > 0 {
		r.wake()
	}
}

func (r *Revocation) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// status returns what is known of a chain: the worst of its pairs.
func (r *Revocation) status(pairs []revPair, now time.Time) RevocationInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	worst := RevocationInfo{State: RevNotChecked}
	for i, p := range pairs {
		s := r.subjects[p.key]
		var info RevocationInfo
		if s == nil {
			// Not tracked (a Store built without this Revocation's
			// knowledge): nothing is known yet.
			info = RevocationInfo{State: RevUnknown, Since: now, Err: "not checked yet"}
		} else {
			info = r.subjectStatus(s, now)
		}
		if i > 0 {
			info.Of = fmt.Sprintf("issuing CA %q", p.cert.Subject.String())
		}
		switch {
		case info.State > worst.State:
			worst = info
		case info.State == RevUnknown && worst.State == RevUnknown && info.Since.Before(worst.Since):
			// The chain's status is unknown since its first link's.
			worst = info
		}
	}
	return worst
}

// subjectStatus is what is known of one subject now. Of the answers that
// say revoked, and of the current complete ones that say not revoked, the
// latest decides (a certificateHold can be lifted; a revoked answer that
// has merely grown old still counts). r.mu is held.
func (r *Revocation) subjectStatus(s *revSubject, now time.Time) RevocationInfo {
	answers := make([]*revAnswer, 0, 1+maxSourcesPerCert)
	if s.ocsp != nil {
		answers = append(answers, s.ocsp)
	}
	crlURLs := sources(s.cert.CRLDistributionPoints)
	for _, u := range crlURLs {
		c := r.crls[crlKey(u, s.issuer)]
		if c == nil || c.ix == nil {
			continue
		}
		if a := c.ix.answer(s.cert); a != nil {
			answers = append(answers, a)
		}
	}
	var revoked, good *revAnswer
	var lastUntil time.Time
	for _, a := range answers {
		switch {
		case a.Revoked:
			if revoked == nil || a.ThisUpdate.After(revoked.ThisUpdate) {
				revoked = a
			}
		case a.complete && a.current(now):
			if good == nil || a.Until.After(good.Until) {
				good = a
			}
		}
		if a.Until.After(lastUntil) {
			lastUntil = a.Until
		}
	}
	if revoked != nil && (good == nil || !good.ThisUpdate.After(revoked.ThisUpdate)) {
		info := RevocationInfo{State: RevRevoked, Source: revoked.Source, ThisUpdate: revoked.ThisUpdate, Until: revoked.Until, RevokedAt: revoked.RevokedAt}
		if revoked.Reason >= 0 {
			info.Reason = crlReasons[revoked.Reason]
		}
		return info
	}
	if good != nil {
		return RevocationInfo{State: RevGood, Source: good.Source, ThisUpdate: good.ThisUpdate, Until: good.Until}
	}
	if len(sources(s.cert.OCSPServer)) == 0 && len(crlURLs) == 0 {
		return RevocationInfo{State: RevNoSource}
	}
	since := s.firstSeen
	if lastUntil.After(since) {
		since = lastUntil
	}
	info := RevocationInfo{State: RevUnknown, Since: since, Err: s.lastErr}
	if info.Err == "" {
		info.Err = "not checked yet"
	}
	return info
}

// answer is what this CRL says of cert, nil if it does not cover it.
func (ix *crlIndex) answer(cert *x509.Certificate) *revAnswer {
	covers, complete, _ := ix.covers(cert)
	if !covers {
		return nil
	}
	a := &revAnswer{Source: ix.source, ThisUpdate: ix.thisUpdate, NextUpdate: ix.nextUpdate, Until: ix.until, Reason: -1, complete: complete}
	if rev, at, reason := ix.lookup(cert.SerialNumber); rev {
		a.Revoked, a.RevokedAt, a.Reason = true, at, reason
	}
	return a
}

// verdict turns what is known into a status under the mode: Valid (usable
// as far as revocation goes) or Revoked or RevocationUnknown, with the
// reason.
func (r *Revocation) verdict(info RevocationInfo, now time.Time) (Status, string) {
	r.mu.Lock()
	mode, grace := r.mode, r.grace
	r.mu.Unlock()
	switch {
	case mode == RevocationOff:
		return Valid, ""
	case info.State == RevRevoked:
		return Revoked, info.Summary()
	case mode == RevocationSoft:
		return Valid, ""
	case info.State == RevNoSource:
		return RevocationUnknown, info.Summary() + "; under certs.revocation = strict a certificate whose status cannot be learnt is not used (soft uses it)"
	case info.State == RevUnknown && now.Sub(info.Since) > grace:
		return RevocationUnknown, fmt.Sprintf("%s; longer than certs.revocation_grace (%s)", info.Summary(), grace)
	}
	return Valid, ""
}

// Run refreshes answers in the background until ctx ends: those due (a
// quarter of their validity left, or a retry after a failure) every
// revocationTick, and new certificates at once.
func (r *Revocation) Run(ctx context.Context) {
	t := time.NewTicker(revocationTick)
	defer t.Stop()
	for {
		r.refresh(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// CheckNow fetches a fresh answer for every tracked certificate (at
// start-up and SIGHUP) and returns when all are done or ctx ends.
func (r *Revocation) CheckNow(ctx context.Context) {
	r.refresh(ctx, true)
}

// refresh checks the subjects that are due (all with force), at most
// maxConcurrentChecks at once, then logs what changed and writes the
// cache's state.
func (r *Revocation) refresh(ctx context.Context, force bool) {
	if r.opts.Offline || r.Mode() == RevocationOff {
		return
	}
	now := r.opts.Now()
	r.mu.Lock()
	var due []*revSubject
	for _, s := range r.subjects {
		if !s.busy && (force || !now.Before(s.nextTry)) {
			s.busy = true
			due = append(due, s)
		}
	}
	r.mu.Unlock()
	round := &sync.Map{} // CRLs fetched in this round, when forced
	slots := make(chan struct{}, maxConcurrentChecks)
	var wg sync.WaitGroup
	for _, s := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				r.check(ctx, s, force, round)
			case <-ctx.Done():
			}
			r.mu.Lock()
			s.busy = false
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	r.logChanges()
	r.saveState()
}

// check learns one subject's status: OCSP first, each responder in turn,
// then its CRLs when no responder gave a current answer.
func (r *Revocation) check(ctx context.Context, s *revSubject, force bool, round *sync.Map) {
	var errs []string
	var got *revAnswer
	for _, u := range sources(s.cert.OCSPServer) {
		a, err := r.queryOCSP(ctx, u, s.cert, s.issuer)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		now := r.opts.Now()
		r.mu.Lock()
		if s.ocsp == nil || !a.ThisUpdate.Before(s.ocsp.ThisUpdate) {
			s.ocsp = a
		}
		r.mu.Unlock()
		r.saveOCSP(s, a)
		if a.current(now) {
			got = a
			break
		}
		errs = append(errs, fmt.Sprintf("OCSP %s: the answer is not current (thisUpdate %s, trusted until %s)", u, a.ThisUpdate.UTC().Format(time.RFC3339), a.Until.UTC().Format(time.RFC3339)))
	}
	next := time.Time{}
	if got == nil {
		for _, u := range sources(s.cert.CRLDistributionPoints) {
			c, err := r.ensureCRL(ctx, u, s.issuer, force, round)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if a := c.ix.answer(s.cert); a != nil && (a.Revoked || a.complete) && a.current(r.opts.Now()) {
				got = a
				next = c.nextTry
				break
			}
			if covers, _, why := c.ix.covers(s.cert); !covers {
				errs = append(errs, fmt.Sprintf("CRL %s: %s", u, why))
			} else {
				errs = append(errs, fmt.Sprintf("CRL %s: not current (thisUpdate %s, trusted until %s)", u, c.ix.thisUpdate.UTC().Format(time.RFC3339), c.ix.until.UTC().Format(time.RFC3339)))
			}
		}
	}
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s.lastTry = now
	if got != nil {
		s.lastErr, s.failures = "", 0
		if next.IsZero() {
			next = refreshAt(got, now)
		}
		s.nextTry = next
		return
	}
	if len(errs) == 0 {
		errs = append(errs, "no OCSP responder or CRL distribution point over HTTP")
	}
	s.lastErr = strings.Join(errs, "; ")
	s.nextTry = now.Add(retryAfter(s.failures))
	s.failures++
}

// refreshAt is when an answer is fetched again: with a quarter of its
// validity left, and not sooner than minRefresh.
func refreshAt(a *revAnswer, now time.Time) time.Time {
	at := a.ThisUpdate.Add(a.Until.Sub(a.ThisUpdate) * 3 / 4)
	if at.Before(now.Add(minRefresh)) {
		at = now.Add(minRefresh)
	}
	return at
}

// retryAfter is the wait after the n-th failure in a row: 1, 2, 4 ...
// minutes, at most maxRetry.
func retryAfter(n int) time.Duration {
	d := minRefresh
	for range min(n, 10) {
		d *= 2
	}
	return min(d, maxRetry)
}

// queryOCSP asks one responder about cert.
func (r *Revocation) queryOCSP(ctx context.Context, u string, cert, issuer *x509.Certificate) (*revAnswer, error) {
	req, err := ocspRequest(cert, issuer)
	if err != nil {
		return nil, fmt.Errorf("OCSP %s: %v", u, err)
	}
	der, err := r.fetch.get(ctx, "OCSP", u, req, "application/ocsp-request", maxOCSPBytes)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	maxAge := r.maxAge
	r.mu.Unlock()
	a, err := verifyOCSP(der, cert, issuer, u, maxAge)
	if err != nil {
		return nil, fmt.Errorf("OCSP %s: %v", u, err)
	}
	if a.ThisUpdate.After(r.opts.Now().Add(clockSkew)) {
		return nil, fmt.Errorf("OCSP %s: the answer's thisUpdate %s is in the future", u, a.ThisUpdate.UTC().Format(time.RFC3339))
	}
	a.raw = der
	return a, nil
}

// ensureCRL returns the CRL of issuer at u, fetching it when it is due
// (or, with force, once per round). Subjects that share it share the
// fetch.
func (r *Revocation) ensureCRL(ctx context.Context, u string, issuer *x509.Certificate, force bool, round *sync.Map) (*crlState, error) {
	k := crlKey(u, issuer)
	for {
		now := r.opts.Now()
		r.mu.Lock()
		c := r.crls[k]
		if c == nil {
			c = &crlState{key: k, url: u, issuer: issuer}
			r.crls[k] = c
		}
		if wait := c.fetching; wait != nil {
			r.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		_, fetched := round.Load(k)
		if fetched || (!force && now.Before(c.nextTry)) {
			defer r.mu.Unlock()
			if c.ix == nil {
				return nil, fmt.Errorf("CRL %s: %s", u, c.lastErr)
			}
			return c, nil
		}
		c.fetching = make(chan struct{})
		r.mu.Unlock()
		round.Store(k, true)
		ix, der, err := r.fetchCRL(ctx, u, issuer)
		r.mu.Lock()
		close(c.fetching)
		c.fetching = nil
		now = r.opts.Now()
		if err != nil {
			c.lastErr = err.Error()
			c.nextTry = now.Add(retryAfter(c.failures))
			c.failures++
		} else {
			if c.ix == nil || !ix.thisUpdate.Before(c.ix.thisUpdate) {
				c.ix = ix
			}
			c.lastErr, c.failures = "", 0
			c.nextTry = refreshAt(&revAnswer{ThisUpdate: ix.thisUpdate, Until: ix.until}, now)
		}
		r.mu.Unlock()
		if err == nil {
			r.saveCRL(c, der)
			return c, nil
		}
		return nil, err
	}
}

// fetchCRL fetches and verifies one CRL.
func (r *Revocation) fetchCRL(ctx context.Context, u string, issuer *x509.Certificate) (*crlIndex, []byte, error) {
	select {
	case r.crlSlots <- struct{}{}:
		defer func() { <-r.crlSlots }()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	der, err := r.fetch.get(ctx, "CRL", u, nil, "", maxCRLBytes)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	maxAge := r.maxAge
	r.mu.Unlock()
	ix, err := parseCRL(der, issuer, u, maxAge)
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %v", u, err)
	}
	return ix, der, nil
}

// logChanges logs each subject whose state changed since it was last
// logged: a revocation and an unknown status as warnings.
func (r *Revocation) logChanges() {
	now := r.opts.Now()
	r.mu.Lock()
	type line struct {
		label string
		info  RevocationInfo
	}
	var lines []line
	for _, s := range r.subjects {
		info := r.subjectStatus(s, now)
		if info.State != s.logged {
			s.logged = info.State
			lines = append(lines, line{s.label, info})
		}
	}
	r.mu.Unlock()
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.label, b.label) })
	log := r.opts.Logger
	for _, l := range lines {
		switch l.info.State {
		case RevRevoked:
			log.Warn("certificate revoked", "certificate", l.label, "status", l.info.Summary())
		case RevUnknown, RevNoSource:
			log.Warn("certificate revocation status unknown", "certificate", l.label, "status", l.info.Summary())
		default:
			log.Info("certificate revocation status", "certificate", l.label, "status", l.info.Summary())
		}
	}
}
