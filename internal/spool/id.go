package spool

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// idAlphabet is Crockford's base32 in lower case. Its characters are in
// ASCII order, so the textual order of two ids is the order of their
// numbers, and it has no character that needs quoting in a file name.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// idTimeChars encodes 60 bits of microseconds since the Unix epoch, enough
// for the next 36,000 years; idRandChars encodes 40 random bits, so two
// gateways (or a gateway restarted within the same microsecond) do not
// collide.
const (
	idTimeChars = 12
	idRandChars = 8
	idLen       = idTimeChars + idRandChars
)

var idClock struct {
	sync.Mutex
	last int64
}

// NewID returns a new queue id: sortable by creation time, unique, and safe
// as a file name (lower-case letters and digits only).
func NewID() string {
	idClock.Lock()
	now := time.Now().UnixMicro()
	if now <= idClock.last {
		// Keep ids strictly increasing within this process even when the
		// wall clock stalls or steps back.
		now = idClock.last + 1
	}
	idClock.last = now
	idClock.Unlock()

	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		// crypto/rand never fails on Linux; if it ever did, a queue id
		// without its random part could collide, so stop rather than risk it.
		panic(fmt.Sprintf("spool: reading random bytes for a queue id: %v", err))
	}
	r := binary.BigEndian.Uint64(rb[:])

	var b [idLen]byte
	t := uint64(now)
	for i := idTimeChars - 1; i >= 0; i-- {
		b[i] = idAlphabet[t&31]
		t >>= 5
	}
	for i := idLen - 1; i >= idTimeChars; i-- {
		b[i] = idAlphabet[r&31]
		r >>= 5
	}
	return string(b[:])
}

// ValidID tells whether s has the shape of a queue id: NewID's 20 characters,
// lower-case letters and digits only. Whoever takes an id from outside (the
// queue commands' arguments, the admin API's paths) checks it with ValidID
// before acting on it, so that an id can name neither a path outside the
// spool nor another URL of the admin API: it has no '/', '.', '%' or
// anything else a path or a URL would interpret.
func ValidID(s string) bool { return validID(s) }

// validID tells whether s has the shape of a queue id, so that an id from the
// command line or a file name can never name a path outside the spool.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	return validToken(s)
}

// validToken tells whether s is a non-empty run of id characters.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
