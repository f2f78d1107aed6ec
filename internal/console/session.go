package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// Limits of the login state kept in memory. Only holders of the token make
// login codes, and only codes make sessions, so the counts are bounded by
// what operators do; the bounds keep a looping script from growing them.
const (
	// loginCodeLifetime is how long the URL of `smimegate admin url` works:
	// long enough to paste it into a browser, short enough that one left
	// in a terminal's scroll-back is worth nothing.
	loginCodeLifetime = 5 * time.Minute
	// maxLoginCodes is how many unused codes may wait at once; the oldest
	// is dropped for a new one.
	maxLoginCodes = 16
	// SessionLifetime is how long a console session lasts after its login,
	// however busy: a working day, after which `admin url` is run again.
	SessionLifetime = 8 * time.Hour
	// maxSessions is how many console sessions may be open at once (a few
	// operators with a phone and a desktop each); the oldest is ended for a
	// new one.
	maxSessions = 32
	// secretBytes is the size of a login code's and a session's secret.
	secretBytes = 32
)

// secretKey is what the maps are keyed by: the SHA-256 of the secret, so
// that the time a map lookup takes says nothing about the secrets held.
type secretKey [sha256.Size]byte

func keyOf(secret string) secretKey { return sha256.Sum256([]byte(secret)) }

// logins holds the one-time login codes and the sessions they opened.
type logins struct {
	now      func() time.Time
	mu       sync.Mutex
	codes    map[secretKey]entry // code -> expiry
	sessions map[secretKey]entry // session -> expiry
	// seq numbers the entries in the order they were made, so that
	// eviction drops the oldest even when a coarse (or a test's) clock
	// gives several the same expiry: map order would otherwise pick one at
	// random, and could end the session that was opened a moment ago.
	seq uint64
}

func newLogins(now func() time.Time) *logins {
	return &logins{now: now, codes: map[secretKey]entry{}, sessions: map[secretKey]entry{}}
}

func newSecret() string {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on Linux; a predictable secret would
		// open the console to anyone, so stop rather than go on.
		panic("console: reading random bytes: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newCode returns a login code valid for loginCodeLifetime, once.
func (l *logins) newCode() (string, time.Time) {
	code := newSecret()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	expiry := now.Add(loginCodeLifetime)
	dropExpired(l.codes, now)
	evictOldest(l.codes, maxLoginCodes-1)
	l.seq++
	l.codes[keyOf(code)] = entry{expiry, l.seq}
	return code, expiry
}

// useCode spends a login code and opens a session for it; ok is false for
// a code that is unknown, spent or expired.
func (l *logins) useCode(code string) (session string, expiry time.Time, ok bool) {
	k := keyOf(code)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, found := l.codes[k]
	delete(l.codes, k)
	if !found || !now.Before(e.expiry) {
		return "", time.Time{}, false
	}
	session = newSecret()
	expiry = now.Add(SessionLifetime)
	dropExpired(l.sessions, now)
	evictOldest(l.sessions, maxSessions-1)
	l.seq++
	l.sessions[keyOf(session)] = entry{expiry, l.seq}
	return session, expiry, true
}

// validSession tells whether session is open.
func (l *logins) validSession(session string) bool {
	if session == "" {
		return false
	}
	k := keyOf(session)
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.sessions[k]
	if ok && !l.now().Before(e.expiry) {
		delete(l.sessions, k)
		ok = false
	}
	return ok
}

// endSession closes a session (logout).
func (l *logins) endSession(session string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sessions, keyOf(session))
}

// entry is a code's or a session's expiry and its place in the order of
// making.
type entry struct {
	expiry time.Time
	seq    uint64
}

func dropExpired(m map[secretKey]entry, now time.Time) {
	for k, e := range m {
		if !now.Before(e.expiry) {
			delete(m, k)
		}
	}
}

// evictOldest removes the entries that expire first, the earliest made
// first among equals, until m has at most n.
func evictOldest(m map[secretKey]entry, n int) {
	for len(m) > n {
		var oldest secretKey
		var first entry
		found := false
		for k, e := range m {
			if !found || e.expiry.Before(first.expiry) || e.expiry.Equal(first.expiry) && e.seq < first.seq {
				oldest, first, found = k, e, true
			}
		}
		delete(m, oldest)
	}
}
