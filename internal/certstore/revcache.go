package certstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The revocation cache lives in state_dir/revocation:
//
//	ocsp/KEY.der   the last OCSP response about one certificate
//	crl/KEY.der    the last CRL of one distribution point of one issuer
//	state.json     when each certificate was first checked
//
// Each answer file is the source URL on one line, then the DER as it was
// received. Nothing read back is trusted as it stands: every answer is
// verified again, signature included, as if it had just been fetched. The
// first-checked times make the grace of certs.revocation_grace survive a
// restart (a restart must not start it over).

// maxStateEntries bounds the first-checked times kept: one per
// certificate of a chain; past it the oldest that no store tracks go.
const maxStateEntries = 100000

// maxStateBytes bounds state.json when it is read back.
const maxStateBytes = 16 << 20

type revState struct {
	Version   int                  `json:"version"`
	FirstSeen map[string]time.Time `json:"first_seen"`
}

// openCache reads the state of the cache directory. The directory is made
// when something is first written to it, so that a gateway that checks
// no revocation leaves no trace in state_dir.
func (r *Revocation) openCache() {
	if r.opts.Dir == "" {
		return
	}
	if !r.opts.ReadOnly {
		r.pruneCache()
	}
	st := r.readState()
	r.seen = st.FirstSeen
}

// CacheProblem says why the cache directory could not be read ("" if it
// could, or does not exist yet): `cert list` run as a user that cannot
// read state_dir knows no revocation status, and says so.
func (r *Revocation) CacheProblem() string { return r.cacheProblem }

// readState reads state.json; a missing or damaged file is an empty state
// (every certificate then starts its grace now, as on a first start).
func (r *Revocation) readState() revState {
	st := revState{FirstSeen: map[string]time.Time{}}
	data, err := readBounded(filepath.Join(r.opts.Dir, "state.json"), maxStateBytes)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.cacheProblem = failureReason(err)
			r.opts.Logger.Warn("revocation cache: state not readable; grace periods start now", "err", err)
		}
		return st
	}
	if err := json.Unmarshal(data, &st); err != nil || st.FirstSeen == nil {
		r.opts.Logger.Warn("revocation cache: state damaged; grace periods start now", "err", err)
		return revState{FirstSeen: map[string]time.Time{}}
	}
	return st
}

// firstSeen returns when the subject k was first tracked, recording now
// for a new one. r.mu is held.
func (r *Revocation) firstSeen(k string) time.Time {
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if t, ok := r.seen[k]; ok {
		return t
	}
	now := r.opts.Now()
	r.seen[k] = now
	r.dirty = true
	return now
}

// saveState writes state.json if it changed.
func (r *Revocation) saveState() {
	if r.opts.Dir == "" || r.opts.ReadOnly {
		return
	}
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return
	}
	if len(r.seen) > maxStateEntries {
		var old []string
		for k := range r.seen {
			if r.subjects[k] == nil {
				old = append(old, k)
			}
		}
		sort.Slice(old, func(i, j int) bool { return r.seen[old[i]].Before(r.seen[old[j]]) })
		for _, k := range old[:min(len(old), len(r.seen)-maxStateEntries)] {
			delete(r.seen, k)
		}
	}
	data, err := json.Marshal(revState{Version: 1, FirstSeen: r.seen})
	r.dirty = false
	r.mu.Unlock()
	if err == nil {
		err = os.MkdirAll(r.opts.Dir, 0o700)
	}
	if err == nil {
		err = WriteFile(filepath.Join(r.opts.Dir, "state.json"), data, 0o600, true)
	}
	if err != nil {
		r.opts.Logger.Error("revocation cache: cannot write its state", "err", err)
	}
}

// loadCached gives a new subject the answers the cache holds for it.
func (r *Revocation) loadCached(s *revSubject) {
	if r.opts.Dir == "" {
		return
	}
	r.mu.Lock()
	maxAge := r.maxAge
	r.mu.Unlock()
	now := r.opts.Now()
	if src, der, err := readAnswer(filepath.Join(r.opts.Dir, "ocsp", s.key+".der"), maxOCSPBytes); err == nil {
		if a, err := verifyOCSP(der, s.cert, s.issuer, src, maxAge); err == nil {
			a.raw = der
			r.mu.Lock()
			if s.ocsp == nil {
				s.ocsp = a
				if a.current(now) {
					s.nextTry = refreshAt(a, now)
				}
			}
			r.mu.Unlock()
		} else {
			r.opts.Logger.Warn("revocation cache: a cached OCSP answer does not verify; ignored", "certificate", s.label, "err", err)
		}
	}
	for _, u := range sources(s.cert.CRLDistributionPoints) {
		k := crlKey(u, s.issuer)
		r.mu.Lock()
		_, known := r.crls[k]
		r.mu.Unlock()
		if known {
			continue
		}
		src, der, err := readAnswer(filepath.Join(r.opts.Dir, "crl", k+".der"), maxCRLBytes+4096)
		if err != nil {
			continue
		}
		r.crlSlots <- struct{}{}
		ix, err := parseCRL(der, s.issuer, src, maxAge)
		<-r.crlSlots
		if err != nil {
			r.opts.Logger.Warn("revocation cache: a cached CRL does not verify; ignored", "url", u, "err", err)
			continue
		}
		r.mu.Lock()
		if _, known := r.crls[k]; !known {
			c := &crlState{key: k, url: u, issuer: s.issuer, ix: ix}
			if ix.until.After(now) {
				c.nextTry = refreshAt(&revAnswer{ThisUpdate: ix.thisUpdate, Until: ix.until}, now)
			}
			r.crls[k] = c
		}
		r.mu.Unlock()
	}
}

func (r *Revocation) saveOCSP(s *revSubject, a *revAnswer) {
	r.saveAnswer(filepath.Join("ocsp", s.key+".der"), a.Source[len("OCSP "):], a.raw)
}

func (r *Revocation) saveCRL(c *crlState, der []byte) {
	r.saveAnswer(filepath.Join("crl", c.key+".der"), c.url, der)
}

func (r *Revocation) saveAnswer(name, source string, der []byte) {
	if r.opts.Dir == "" || r.opts.ReadOnly || der == nil {
		return
	}
	data := make([]byte, 0, len(source)+1+len(der))
	data = append(append(append(data, source...), '\n'), der...)
	path := filepath.Join(r.opts.Dir, name)
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = WriteFile(path, data, 0o600, true)
	}
	if err != nil {
		r.opts.Logger.Error("revocation cache: cannot write an answer; it is kept in memory", "file", name, "err", err)
	}
}

// readAnswer reads a cached answer file: its source line and its DER.
func readAnswer(path string, limit int64) (string, []byte, error) {
	data, err := readBounded(path, limit+2048)
	if err != nil {
		return "", nil, err
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 || i > 2048 {
		return "", nil, errors.New("not a cached answer")
	}
	return string(data[:i]), data[i+1:], nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, errors.New("larger than any cached answer")
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, err
	}
	return data, nil
}

// pruneCache removes answers not written for twice the maximum age: no
// answer that old is trusted, and the certificate they were about may be
// long gone.
func (r *Revocation) pruneCache() {
	cutoff := r.opts.Now().Add(-2 * r.opts.MaxAge)
	for _, d := range []string{"ocsp", "crl"} {
		entries, err := os.ReadDir(filepath.Join(r.opts.Dir, d))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
				os.Remove(filepath.Join(r.opts.Dir, d, e.Name()))
			}
		}
	}
}
