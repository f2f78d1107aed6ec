package certstore

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Discovery finds partner domain certificates in DNS, as SMIMEA records
// (RFC 8162), for destination domains that have no usable local one. Only
// answers that the resolver marks authenticated (the AD bit, RFC 4035
// section 3.2.3) count, so the resolver must validate DNSSEC and the path
// to it must be trusted (loopback, or a protected network): the AD bit is
// not signed.
//
// For a domain, owner names hex(SHA-256(local part))[:56]._smimecert.D
// (RFC 8162 section 3) are looked up for each name of certs.names in order
// (smg_encryptor first), for D and then its parent domains, most specific
// first as for local certificates, never above the registered domain (a
// public suffix is never asked about) and never above the domain of an
// unusable local certificate (which decides for that domain as it would
// without discovery).
//
// Answers are cached for their TTL, at least minDiscoveryTTL and at most
// maxDiscoveryTTL, in memory and in state_dir/discovery; a failure for
// failureTTL. Lookup (the Store's) only ever reads the cache: Discover is
// the blocking lookup, which the queue runs before its policy step, and
// Run refreshes what is in use before it expires.
type Discovery struct {
	opts   DiscoveryOptions
	udp    *dns.Client
	tcp    *dns.Client
	server string
	err    error // why no server is known (the system resolver's configuration)

	mu       sync.Mutex
	entries  map[string]*smimeaEntry // by owner name
	inflight map[string]chan struct{}
}

// DiscoveryOptions configure a Discovery.
type DiscoveryOptions struct {
	// Server is host:port of a validating resolver (discovery.dns_server);
	// "" is the first nameserver of /etc/resolv.conf.
	Server string
	// Names are the local parts looked up (certs.names); DefaultNames if
	// empty.
	Names []string
	// Dir is the cache directory (state_dir/discovery); "" keeps answers
	// in memory only.
	Dir      string
	ReadOnly bool // read the cache, never write it (cert list)
	Now      func() time.Time
	Logger   *slog.Logger
	// Timeout bounds one query; 0 is dnsTimeout.
	Timeout time.Duration
}

// Bounds and times of discovery.
const (
	// minDiscoveryTTL and maxDiscoveryTTL clamp how long an answer is
	// kept: a TTL of seconds would make every message wait for DNS; one
	// of weeks would keep a certificate the partner withdrew.
	minDiscoveryTTL = 5 * time.Minute
	maxDiscoveryTTL = 24 * time.Hour
	// failureTTL is how long a failed lookup is remembered before it is
	// tried again (the message waits meanwhile, and is retried).
	failureTTL = time.Minute
	// dnsTimeout bounds one DNS query (UDP, then TCP if truncated).
	dnsTimeout = 5 * time.Second
	// maxDiscoveryLevels bounds the domains asked about for one
	// destination (the domain and its parents below the public suffix).
	maxDiscoveryLevels = 4
	// maxDiscoveryNames bounds the local parts asked about per domain.
	maxDiscoveryNames = 4
	// maxSMIMEARecords bounds the records of one answer that are read:
	// a rotation needs two or three.
	maxSMIMEARecords = 16
	// maxDiscoveryEntries bounds the answers cached; past it the least
	// recently used go.
	maxDiscoveryEntries = 10000
	// maxCNAMEChain bounds the CNAMEs followed inside one answer.
	maxCNAMEChain = 8
	// discoveryKeepWarm: an answer used within this long is refreshed by
	// Run before it expires, so that mail to it never waits for DNS.
	discoveryKeepWarm = 24 * time.Hour
	// discoveryTick is how often Run looks for answers to refresh.
	discoveryTick = 30 * time.Second
	// maxDiscoveryFileBytes bounds a cache file read back (a DNS message
	// is at most 64 KiB, its JSON about twice that).
	maxDiscoveryFileBytes = 256 << 10
)

// The outcomes of one lookup.
const (
	outcomeFound    = "found"    // authenticated records of a kind we can use
	outcomeNone     = "none"     // authenticated: no record (NXDOMAIN, NODATA), or only records we cannot use
	outcomeInsecure = "insecure" // the answer is not authenticated: ignored
	outcomeFailed   = "failed"   // no answer (SERVFAIL: bogus, or unreachable; timeout)
)

// SMIMEARecord is one SMIMEA record (RFC 8162 section 2, the TLSA format
// of RFC 6698 section 2.1).
type SMIMEARecord struct {
	Usage        uint8  `json:"usage"`
	Selector     uint8  `json:"selector"`
	MatchingType uint8  `json:"matching_type"`
	Data         []byte `json:"data"`
}

// Usable says whether smimegate can take a certificate from the record:
// usage 1 (PKIX-EE, chained to certs.trust_anchors) or 3 (DANE-EE), the
// full certificate (selector 0), not a hash (matching type 0). Usages 0
// and 2 constrain a CA and selector 1 carries only the public key: the
// certificate would have to come from elsewhere, so they are ignored.
func (r SMIMEARecord) Usable() (bool, string) {
	switch {
	case r.Usage != 1 && r.Usage != 3:
		return false, fmt.Sprintf("usage %d (only 1, PKIX-EE, and 3, DANE-EE, name a certificate to encrypt to)", r.Usage)
	case r.Selector != 0:
		return false, fmt.Sprintf("selector %d (the certificate must come from elsewhere; only 0, the full certificate, is used)", r.Selector)
	case r.MatchingType != 0:
		return false, fmt.Sprintf("matching type %d (a hash; only 0, the full data, is used)", r.MatchingType)
	}
	return true, ""
}

// smimeaEntry is the cached answer for one owner name.
type smimeaEntry struct {
	Owner     string         `json:"owner"`
	Domain    string         `json:"domain"`
	Name      string         `json:"name"`
	Outcome   string         `json:"outcome"`
	Records   []SMIMEARecord `json:"records,omitempty"`
	Why       string         `json:"why,omitempty"`
	QueriedAt time.Time      `json:"queried_at"`
	Expires   time.Time      `json:"expires"`
	lastUsed  time.Time
}

// NewDiscovery returns a Discovery and reads its cache directory.
func NewDiscovery(opts DiscoveryOptions) *Discovery {
	if len(opts.Names) == 0 {
		opts.Names = DefaultNames
	}
	if len(opts.Names) > maxDiscoveryNames {
		opts.Names = opts.Names[:maxDiscoveryNames]
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = dnsTimeout
	}
	d := &Discovery{
		opts:     opts,
		udp:      &dns.Client{Net: "udp", Timeout: opts.Timeout, UDPSize: 1232},
		tcp:      &dns.Client{Net: "tcp", Timeout: opts.Timeout},
		server:   opts.Server,
		entries:  map[string]*smimeaEntry{},
		inflight: map[string]chan struct{}{},
	}
	if d.server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		switch {
		case err != nil:
			d.err = fmt.Errorf("no discovery.dns_server, and the system resolver's configuration cannot be read: %v", err)
		case len(cc.Servers) == 0:
			d.err = errors.New("no discovery.dns_server, and /etc/resolv.conf names no nameserver")
		default:
			d.server = net.JoinHostPort(cc.Servers[0], cc.Port)
		}
	}
	d.loadCache()
	return d
}

// OwnerName is the SMIMEA owner name for local@domain (RFC 8162 section
// 3): the SHA-256 of the local part truncated to 28 octets, in hex, then
// _smimecert and the domain.
func OwnerName(local, domain string) string {
	sum := sha256.Sum256([]byte(local))
	return hex.EncodeToString(sum[:28]) + "._smimecert." + domain
}

// levels are the domains asked about for d: d and its parents, most
// specific first, at most maxDiscoveryLevels, never a public suffix, and
// never above stopAt (when d is under it).
func discoveryLevels(d, stopAt string) []string {
	var out []string
	for cur := d; cur != "" && len(out) < maxDiscoveryLevels; cur = parentDomain(cur) {
		if publicSuffixReason(cur) != "" {
			break
		}
		out = append(out, cur)
		if cur == stopAt {
			break
		}
	}
	return out
}

// discoveryResult is what the cache says of a domain.
type discoveryResult struct {
	state string // outcomeFound, outcomeNone, outcomeFailed, or "pending"
	level string // found: the domain the records are for
	entry *smimeaEntry
	why   string // failed, pending, none: in words
}

const statePending = "pending"

// cached returns what the cache says of d now, without asking DNS.
func (dc *Discovery) cached(d, stopAt string, now time.Time) discoveryResult {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	var notes []string
	for _, level := range discoveryLevels(d, stopAt) {
		for _, name := range dc.opts.Names {
			owner := OwnerName(name, level)
			e := dc.entries[owner]
			if e == nil || !now.Before(e.Expires) {
				return discoveryResult{state: statePending, why: fmt.Sprintf("the SMIMEA lookup of %s has not answered yet", owner)}
			}
			e.lastUsed = now
			switch e.Outcome {
			case outcomeFailed:
				return discoveryResult{state: outcomeFailed, why: fmt.Sprintf("the SMIMEA lookup of %s failed: %s", owner, e.Why)}
			case outcomeFound:
				return discoveryResult{state: outcomeFound, level: level, entry: e}
			case outcomeInsecure, outcomeNone:
				if e.Why != "" {
					notes = append(notes, fmt.Sprintf("%s: %s", owner, e.Why))
				}
			}
		}
	}
	why := "no DNSSEC-validated SMIMEA record for " + d
	if len(notes) > 0 {
		why += " (ignored: " + strings.Join(notes, "; ") + ")"
	}
	return discoveryResult{state: outcomeNone, why: why}
}

// discover looks up what the cache lacks for d (or has only expired, or
// everything with force), waiting at most until ctx ends, and returns the
// result.
func (dc *Discovery) discover(ctx context.Context, d, stopAt string, force bool) discoveryResult {
	now := dc.opts.Now()
	var wg sync.WaitGroup
	for _, level := range discoveryLevels(d, stopAt) {
		for _, name := range dc.opts.Names {
			owner := OwnerName(name, level)
			dc.mu.Lock()
			e := dc.entries[owner]
			dc.mu.Unlock()
			if !force && e != nil && now.Before(e.Expires) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				dc.refreshOwner(ctx, owner, level, name)
			}()
		}
	}
	wg.Wait()
	return dc.cached(d, stopAt, dc.opts.Now())
}

// refreshOwner queries one owner name and caches the answer; concurrent
// callers for the same name share one query.
func (dc *Discovery) refreshOwner(ctx context.Context, owner, domain, name string) {
	dc.mu.Lock()
	if wait, ok := dc.inflight[owner]; ok {
		dc.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
		}
		return
	}
	done := make(chan struct{})
	dc.inflight[owner] = done
	dc.mu.Unlock()
	defer func() {
		dc.mu.Lock()
		delete(dc.inflight, owner)
		dc.mu.Unlock()
		close(done)
	}()

	e := dc.query(ctx, owner)
	e.Domain, e.Name = domain, name
	dc.mu.Lock()
	if old := dc.entries[owner]; old != nil {
		e.lastUsed = old.lastUsed
	}
	dc.entries[owner] = e
	dc.evict()
	dc.mu.Unlock()
	switch e.Outcome {
	case outcomeFailed:
		dc.opts.Logger.Warn("SMIMEA lookup failed", "owner", owner, "reason", e.Why)
	case outcomeInsecure:
		dc.opts.Logger.Warn("SMIMEA answer not authenticated by DNSSEC: ignored", "owner", owner, "reason", e.Why)
	default:
		dc.opts.Logger.Info("SMIMEA lookup", "owner", owner, "outcome", e.Outcome, "records", len(e.Records), "until", e.Expires.UTC().Format(time.RFC3339))
	}
	dc.save(e)
}

// evict drops the least recently used entries past maxDiscoveryEntries.
// dc.mu is held.
func (dc *Discovery) evict() {
	for len(dc.entries) > maxDiscoveryEntries {
		var oldest *smimeaEntry
		for _, e := range dc.entries {
			if oldest == nil || e.lastUsed.Before(oldest.lastUsed) {
				oldest = e
			}
		}
		delete(dc.entries, oldest.Owner)
		dc.remove(oldest)
	}
}

// query asks the resolver for the SMIMEA RRset of owner and judges the
// answer.
func (dc *Discovery) query(ctx context.Context, owner string) *smimeaEntry {
	now := dc.opts.Now()
	e := &smimeaEntry{Owner: owner, QueriedAt: now}
	fail := func(why string) *smimeaEntry {
		e.Outcome, e.Why, e.Expires = outcomeFailed, why, now.Add(failureTTL)
		return e
	}
	if dc.err != nil {
		return fail(dc.err.Error())
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(owner), dns.TypeSMIMEA)
	// RFC 6840 section 5.7: AD in a query asks for the AD bit in the
	// answer; DO (RFC 3225) asks for DNSSEC records, which some resolvers
	// need before they set it.
	m.AuthenticatedData = true
	m.SetEdns0(1232, true)
	qctx, cancel := context.WithTimeout(ctx, 2*dc.opts.Timeout)
	defer cancel()
	in, _, err := dc.udp.ExchangeContext(qctx, m, dc.server)
	if err == nil && in.Truncated {
		in, _, err = dc.tcp.ExchangeContext(qctx, m, dc.server)
	}
	if err != nil {
		return fail(fmt.Sprintf("resolver %s: %v", dc.server, err))
	}
	return judgeSMIMEA(e, in, now)
}

// judgeSMIMEA turns a resolver's answer into an entry (outcome, records,
// expiry). It is separate from query so that it can be fuzzed.
func judgeSMIMEA(e *smimeaEntry, in *dns.Msg, now time.Time) *smimeaEntry {
	fail := func(why string) *smimeaEntry {
		e.Outcome, e.Why, e.Expires = outcomeFailed, why, now.Add(failureTTL)
		return e
	}
	if len(in.Question) != 1 || !strings.EqualFold(in.Question[0].Name, dns.Fqdn(e.Owner)) || in.Question[0].Qtype != dns.TypeSMIMEA {
		return fail("the resolver answered another question")
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeServerFailure:
		return fail("the resolver answered SERVFAIL (a DNSSEC validation failure, bogus, or an unreachable zone)")
	default:
		return fail("the resolver answered " + dns.RcodeToString[in.Rcode])
	}
	// Follow the CNAMEs of the answer from the question's name.
	name := dns.Fqdn(e.Owner)
	for range maxCNAMEChain {
		next := ""
		for _, rr := range in.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = c.Target
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	var ttl uint32
	var usable, ignored []string
	for _, rr := range in.Answer {
		s, ok := rr.(*dns.SMIMEA)
		if !ok || !strings.EqualFold(s.Hdr.Name, name) {
			continue
		}
		if len(e.Records) == maxSMIMEARecords {
			ignored = append(ignored, fmt.Sprintf("more than %d records", maxSMIMEARecords))
			break
		}
		data, err := hex.DecodeString(s.Certificate)
		if err != nil {
			ignored = append(ignored, "a record whose data is not hex")
			continue
		}
		rec := SMIMEARecord{Usage: s.Usage, Selector: s.Selector, MatchingType: s.MatchingType, Data: data}
		if ok, why := rec.Usable(); ok {
			usable = append(usable, "")
		} else {
			ignored = append(ignored, why)
		}
		e.Records = append(e.Records, rec)
		if ttl == 0 || s.Hdr.Ttl < ttl {
			ttl = s.Hdr.Ttl
		}
	}
	if len(e.Records) == 0 {
		// NXDOMAIN or NODATA: cached for the negative TTL of RFC 2308
		// section 5, the SOA's TTL and MINIMUM, whichever is less.
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
	}
	e.Expires = now.Add(clampTTL(ttl))
	switch {
	case !in.AuthenticatedData:
		e.Outcome = outcomeInsecure
		if len(e.Records) > 0 {
			e.Why = fmt.Sprintf("%d record(s) in an answer the resolver did not authenticate (no AD bit: an unsigned zone, or a resolver that does not validate)", len(e.Records))
		} else {
			e.Why = "an answer the resolver did not authenticate (no AD bit)"
		}
		e.Records = nil
	case len(usable) > 0:
		e.Outcome = outcomeFound
		if len(ignored) > 0 {
			e.Why = "ignored: " + strings.Join(ignored, "; ")
		}
	case len(e.Records) > 0:
		e.Outcome = outcomeNone
		e.Why = "only records smimegate cannot use: " + strings.Join(ignored, "; ")
	default:
		e.Outcome = outcomeNone
	}
	return e
}

func clampTTL(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	return min(max(d, minDiscoveryTTL), maxDiscoveryTTL)
}

// Run refreshes the answers in use before they expire, until ctx ends.
func (dc *Discovery) Run(ctx context.Context) {
	t := time.NewTicker(discoveryTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dc.refreshWarm(ctx)
	}
}

// refreshWarm re-queries the entries used within discoveryKeepWarm that
// expire within two ticks (or a tenth of their life).
func (dc *Discovery) refreshWarm(ctx context.Context) {
	now := dc.opts.Now()
	var due []*smimeaEntry
	dc.mu.Lock()
	for _, e := range dc.entries {
		life := e.Expires.Sub(e.QueriedAt)
		soon := max(2*discoveryTick, life/10)
		if now.Sub(e.lastUsed) < discoveryKeepWarm && e.Expires.Sub(now) < soon {
			due = append(due, e)
		}
	}
	dc.mu.Unlock()
	slots := make(chan struct{}, maxConcurrentChecks)
	var wg sync.WaitGroup
	for _, e := range due {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			dc.refreshOwner(ctx, e.Owner, e.Domain, e.Name)
		}()
	}
	wg.Wait()
}

// The cache directory holds one JSON file per owner name; failures are
// not written (they are retried within failureTTL anyway).

func (dc *Discovery) cacheFile(owner string) string {
	return filepath.Join(dc.opts.Dir, owner+".json")
}

func (dc *Discovery) save(e *smimeaEntry) {
	if dc.opts.Dir == "" || dc.opts.ReadOnly || e.Outcome == outcomeFailed {
		return
	}
	data, err := json.Marshal(e)
	if err == nil {
		err = WriteFile(dc.cacheFile(e.Owner), data, 0o600, true)
	}
	if err != nil {
		dc.opts.Logger.Error("discovery cache: cannot write an answer; it is kept in memory", "owner", e.Owner, "err", err)
	}
}

func (dc *Discovery) remove(e *smimeaEntry) {
	if dc.opts.Dir != "" && !dc.opts.ReadOnly {
		os.Remove(dc.cacheFile(e.Owner))
	}
}

// loadCache reads the cached answers that have not expired, and removes
// the others.
func (dc *Discovery) loadCache() {
	if dc.opts.Dir == "" {
		return
	}
	if !dc.opts.ReadOnly {
		if err := os.MkdirAll(dc.opts.Dir, 0o700); err != nil {
			dc.opts.Logger.Error("discovery cache: cannot create its directory; answers are kept in memory only", "dir", dc.opts.Dir, "err", err)
			dc.opts.Dir = ""
			return
		}
	}
	entries, err := os.ReadDir(dc.opts.Dir)
	if err != nil {
		return
	}
	now := dc.opts.Now()
	for _, de := range entries {
		if !strings.HasSuffix(de.Name(), ".json") || strings.HasPrefix(de.Name(), ".") || len(dc.entries) >= maxDiscoveryEntries {
			continue
		}
		path := filepath.Join(dc.opts.Dir, de.Name())
		data, err := readBounded(path, maxDiscoveryFileBytes)
		var e smimeaEntry
		if err == nil {
			err = json.Unmarshal(data, &e)
		}
		switch {
		case err != nil, e.Owner+".json" != de.Name(), !slices.Contains([]string{outcomeFound, outcomeNone, outcomeInsecure}, e.Outcome), len(e.Records) > maxSMIMEARecords:
			if !dc.opts.ReadOnly {
				os.Remove(path)
			}
		case !now.Before(e.Expires):
			if !dc.opts.ReadOnly {
				os.Remove(path)
			}
		default:
			e.lastUsed = e.QueriedAt
			dc.entries[e.Owner] = &e
		}
	}
}

// parsedRecords returns the certificates of an entry's usable records,
// with the usage of each, and says why each other record is not used.
func (e *smimeaEntry) parsedRecords() (certs []*x509.Certificate, usages []uint8, skipped []string) {
	for _, r := range e.Records {
		if ok, why := r.Usable(); !ok {
			skipped = append(skipped, why)
			continue
		}
		x, err := x509.ParseCertificate(r.Data)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("usage %d record that holds no certificate: %v", r.Usage, err))
			continue
		}
		certs = append(certs, x)
		usages = append(usages, r.Usage)
	}
	return certs, usages, skipped
}
