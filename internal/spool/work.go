package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// A message that makes the gateway die (out of memory, a panic in a parser)
// would be replayed from the spool at every start, and kill it again: a
// crash loop that also stops all other mail. The work markers break it. The
// worker calls BeginWork before it processes a message and EndWork when it
// is done with it, whatever the outcome; a marker that survives is a start
// that never ended, that is a process that died while on this message.
//
// The markers are slots of one file, state_dir/work, written in place with
// one pwrite(2) each and never fsynced. They only have to outlive the
// process, which they do in the page cache; a machine that loses power may
// lose the counts, which at worst gives a poison message two more tries. A
// file per message would cost a create and an unlink per message, which on
// ext4 is a tenth of a whole fsynced commit; an fsync would double it.
//
// A slot is workSlotSize bytes: the queue id, a space, the number of starts
// as two decimal digits, spaces and a newline (so that `cat work` reads as a
// list), or all zero bytes when free. Anything else is damage and is freed
// at Open.

// workSlotSize is the size of one marker slot: a power of two that divides
// the page size, so that no slot straddles two pages and one pwrite either
// happened or did not when the process dies.
const workSlotSize = 32

// maxWorkSlots bounds the markers and so the file (2 MiB) and the map that
// indexes it. Markers in use are the messages being worked on, bounded by
// the gateway's workers (a few hundred), plus those a dead process left,
// bounded the same way.
const maxWorkSlots = 1 << 16

// maxWorkStarts caps the starts a marker records. The gateway acts at two;
// the cap only keeps the count in its two digits should it fail to act (the
// quarantine move failing at every start, say), and it is far above any
// threshold a caller would choose.
const maxWorkStarts = 64

// ErrWorkUnavailable is returned (wrapped) by BeginWork when this Spool
// keeps no work markers: another process had the spool open at Open, and
// the markers are that process's.
var ErrWorkUnavailable = errors.New("work markers are kept by the process that recovered the spool")

// workMarker is a slot in use: where it is and the starts it records.
type workMarker struct {
	slot   int
	starts int
}

// workTable is the spool's markers: the file and its index, under the
// Spool's mu.
type workTable struct {
	f       *os.File
	markers map[string]workMarker
	free    []int // free slots below used, reused before the file grows
	used    int   // slots in the file
}

// encodeWorkSlot returns the slot for id with starts starts.
func encodeWorkSlot(id string, starts int) []byte {
	b := make([]byte, 0, workSlotSize)
	b = append(b, id...)
	b = append(b, ' ')
	if starts < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendInt(b, int64(starts), 10)
	for len(b) < workSlotSize-1 {
		b = append(b, ' ')
	}
	return append(b, '\n')
}

var freeWorkSlot = make([]byte, workSlotSize)

// decodeWorkSlot parses one slot: free, a marker, or damaged (ok false).
func decodeWorkSlot(b []byte) (id string, starts int, free, ok bool) {
	if len(b) != workSlotSize {
		return "", 0, false, false
	}
	if bytes.Equal(b, freeWorkSlot) {
		return "", 0, true, true
	}
	id = string(b[:idLen])
	if !validID(id) || b[idLen] != ' ' || b[workSlotSize-1] != '\n' {
		return "", 0, false, false
	}
	d := b[idLen+1 : idLen+3]
	if d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9' {
		return "", 0, false, false
	}
	starts = int(d[0]-'0')*10 + int(d[1]-'0')
	if starts < 1 || starts > maxWorkStarts {
		return "", 0, false, false
	}
	for _, c := range b[idLen+3 : workSlotSize-1] {
		if c != ' ' {
			return "", 0, false, false
		}
	}
	return id, starts, false, true
}

// parseWorkTable reads the content of the work file: the markers to keep
// (keep says whether a message's marker should stay: it is queued), the free
// slots, the slots to free in the file (damaged ones, markers of messages
// that are gone, all but the largest of duplicates) and how many of those
// were damaged. A trailing partial slot is ignored; the caller cuts it off.
func parseWorkTable(data []byte, keep func(id string) bool) (t *workTable, toFree []int, damaged int) {
	t = &workTable{markers: map[string]workMarker{}}
	t.used = min(len(data)/workSlotSize, maxWorkSlots)
	for slot := range t.used {
		id, starts, free, ok := decodeWorkSlot(data[slot*workSlotSize : (slot+1)*workSlotSize])
		if free {
			t.free = append(t.free, slot)
			continue
		}
		freeing := slot
		if ok && keep(id) {
			prev, dup := t.markers[id]
			if !dup {
				t.markers[id] = workMarker{slot: slot, starts: starts}
				continue
			}
			if starts > prev.starts {
				t.markers[id] = workMarker{slot: slot, starts: starts}
				freeing = prev.slot
			}
		}
		if !ok {
			damaged++
		}
		toFree = append(toFree, freeing)
		t.free = append(t.free, freeing)
	}
	return t, toFree, damaged
}

// openWork opens state_dir/work, reads its markers and frees in the file
// the slots parseWorkTable says to. Only the process that recovers the
// spool calls it; its memory is bounded by maxWorkSlots.
func (s *Spool) openWork(keep func(id string) bool) error {
	path := filepath.Join(s.dir, "work")
	// O_NOFOLLOW: the file is always ours, never something a link would
	// point us at.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return fmt.Errorf("spool: work markers: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		return fmt.Errorf("spool: work markers in %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxWorkSlots*workSlotSize+1))
	if err != nil {
		return fail(err)
	}
	t, toFree, damaged := parseWorkTable(data, keep)
	if len(data) != t.used*workSlotSize {
		// A partial last slot, or a file beyond the bound: damage, cut off.
		if err := f.Truncate(int64(t.used) * workSlotSize); err != nil {
			return fail(err)
		}
		damaged++
	}
	for _, slot := range toFree {
		if _, err := f.WriteAt(freeWorkSlot, int64(slot)*workSlotSize); err != nil {
			return fail(err)
		}
	}
	if damaged > 0 {
		s.log.Warn("spool: damaged work markers freed", "file", path, "slots", damaged)
	}
	t.f = f
	s.work = t
	return nil
}

// BeginWork records that processing of the queued message id starts and
// returns how many earlier starts were recorded and never ended with
// EndWork: 0 for a message whose processing always ended, 1 after one death
// of the process while on it, and so on up to maxWorkStarts. The record
// survives the death of the process and Open (recovery keeps the markers of
// queued messages), not necessarily a crash of the machine.
//
// Errors: an invalid id wraps ErrNotFound; a Spool that did not recover the
// spool (another process had it open) returns ErrWorkUnavailable; more
// than maxWorkSlots messages in work at once, or a failing write, is an
// error too. After an error nothing was recorded and the count is unknown.
func (s *Spool) BeginWork(id string) (previousStarts int, err error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.work
	if t == nil {
		return 0, fmt.Errorf("spool: work marker of %s: %w", id, ErrWorkUnavailable)
	}
	m, ok := t.markers[id]
	if !ok {
		switch {
		case len(t.free) > 0:
			m.slot = t.free[len(t.free)-1]
		case t.used < maxWorkSlots:
			m.slot = t.used
		default:
			return 0, fmt.Errorf("spool: work marker of %s: %d messages are in work, the most the markers hold", id, maxWorkSlots)
		}
	}
	next := min(m.starts+1, maxWorkStarts)
	if _, err := t.f.WriteAt(encodeWorkSlot(id, next), int64(m.slot)*workSlotSize); err != nil {
		return 0, fmt.Errorf("spool: work marker of %s: %w", id, err)
	}
	if !ok {
		if len(t.free) > 0 {
			t.free = t.free[:len(t.free)-1]
		} else {
			t.used++
		}
	}
	previousStarts = m.starts
	m.starts = next
	t.markers[id] = m
	return previousStarts, nil
}

// EndWork removes the work marker of id: its processing has ended (the
// message was delivered, deferred, bounced or quarantined, or the policy step
// failed cleanly). Remove, RemoveDone and Quarantine clear the marker too.
// It does nothing for an id without a marker. A marker that cannot be
// cleared is logged: it would count a start that ended, bringing the message
// closer to the quarantine.
func (s *Spool) EndWork(id string) {
	if !validID(id) {
		s.log.Error("spool: EndWork with an invalid queue id", "id", id)
		return
	}
	s.clearWork(id)
}

func (s *Spool) clearWork(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.work
	if t == nil {
		return
	}
	m, ok := t.markers[id]
	if !ok {
		return
	}
	if _, err := t.f.WriteAt(freeWorkSlot, int64(m.slot)*workSlotSize); err != nil {
		s.log.Error("spool: could not clear a work marker", "id", id, "err", err)
		return
	}
	delete(t.markers, id)
	t.free = append(t.free, m.slot)
}
