package console

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of the decision log kept in memory for the console. The lines
// hold what the log holds (queue ids, addresses, domains, fingerprints,
// reasons), never message content.
const (
	// MaxDecisions is how many decision lines are kept: a busy hour of a
	// small gateway, a few minutes of a big one; the log has the rest.
	MaxDecisions = 200
	// maxDecisionAttrs bounds the attributes kept of one line.
	maxDecisionAttrs = 16
	// maxDecisionValue bounds one attribute's text (a reason quoting a
	// next hop's reply can be long).
	maxDecisionValue = 300
)

// decisionMessage is the message of the gateway's one log line per decision.
const decisionMessage = "decision"

// Decision is one decision log line.
type Decision struct {
	Time  time.Time
	Level slog.Level
	Attrs []Attr
}

// Attr is one key=value of a decision line.
type Attr struct{ Key, Value string }

// Get returns the value of key, "" if the line has none.
func (d Decision) Get(key string) string {
	for _, a := range d.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// DecisionLog keeps the last MaxDecisions decision lines of a logger.
type DecisionLog struct {
	mu   sync.Mutex
	ring []Decision
	next int
	full bool
}

// NewDecisionLog returns an empty decision log.
func NewDecisionLog() *DecisionLog {
	return &DecisionLog{ring: make([]Decision, MaxDecisions)}
}

// Lines returns the kept lines, oldest first.
func (l *DecisionLog) Lines() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return slices.Clone(l.ring[:l.next])
	}
	return append(slices.Clone(l.ring[l.next:]), l.ring[:l.next]...)
}

func (l *DecisionLog) add(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = d
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
}

// Handler returns a slog handler that writes to inner and keeps the
// decision lines (those whose message is "decision") in l, whatever
// inner's level.
func (l *DecisionLog) Handler(inner slog.Handler) slog.Handler {
	return &decisionHandler{inner: inner, log: l}
}

type decisionHandler struct {
	inner slog.Handler
	log   *DecisionLog
	attrs []Attr // from WithAttrs
	group string // from WithGroup, as a key prefix
}

func (h *decisionHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo || h.inner.Enabled(ctx, level)
}

func (h *decisionHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == decisionMessage {
		d := Decision{Time: r.Time, Level: r.Level, Attrs: slices.Clone(h.attrs)}
		r.Attrs(func(a slog.Attr) bool {
			d.Attrs = appendAttr(d.Attrs, h.group, a)
			return len(d.Attrs) < maxDecisionAttrs
		})
		h.log.add(d)
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *decisionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	c.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		c.attrs = appendAttr(c.attrs, h.group, a)
	}
	return &c
}

func (h *decisionHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

func appendAttr(dst []Attr, prefix string, a slog.Attr) []Attr {
	if len(dst) >= maxDecisionAttrs {
		return dst
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, ga := range v.Group() {
			dst = appendAttr(dst, prefix+a.Key+".", ga)
		}
		return dst
	}
	s := v.String()
	if len(s) > maxDecisionValue {
		s = strings.ToValidUTF8(s[:maxDecisionValue], "") + "..."
	}
	return append(dst, Attr{Key: prefix + a.Key, Value: s})
}
