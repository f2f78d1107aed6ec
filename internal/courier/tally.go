package courier

import (
	"log/slog"
	"strings"

	"smimegate/internal/smtp"
)

// tally collects the results of one transaction and writes its log line.
type tally struct {
	d   *delivery
	s   *session
	idx []int
	// last is the outcome that decided the attempt, for the log, and
	// lastStep the command its reply answered; rendered once, when the
	// line is written.
	last     *failure
	lastStep string
}

func newTally(d *delivery, s *session, idx []int) *tally {
	for _, i := range idx {
		r := &d.results[i]
		r.Host, r.HostName, r.TLS = s.target.addr, s.target.host, s.tlsDesc
	}
	return &tally{d: d, s: s, idx: idx}
}

func (t *tally) set(i int, f *failure) {
	r := &t.d.results[i]
	r.Status, r.Reply, r.Remote, r.Enhanced, r.MaybeDuplicate = f.status, f.reply, f.remote, f.enhanced, f.dup
	t.last, t.lastStep = f, ""
}

func (t *tally) setAll(idx []int, f *failure) {
	for _, i := range idx {
		t.set(i, f)
	}
}

// delivered records the server's acceptance of the message (or, for a
// Verify, of the recipient).
func (t *tally) delivered(idx []int, r *smtp.Error) {
	t.setAll(idx, &failure{status: Delivered, reply: *r, remote: true, enhanced: r.Status(), answered: true})
}

// reply records a server's refusal. The result keeps the reply as the
// server sent it (it becomes a DSN's Diagnostic-Code); the log line also
// names the command it answered, as Postfix does.
func (t *tally) reply(idx []int, r *smtp.Error, command string) {
	f := replyFailure(r)
	t.setAll(idx, f)
	t.lastStep = command
}

// log writes the attempt's line: the outcome is the common one, or
// "partial" with every recipient's status when they differ.
func (t *tally) log() {
	res := t.d.results
	outcome := ""
	for _, i := range t.idx {
		if st := res[i].Status.String(); outcome == "" {
			outcome = st
		} else if outcome != st {
			outcome = "partial"
		}
	}
	var extra []slog.Attr
	if outcome == "partial" {
		// Only a partial outcome needs each recipient's; the common
		// line costs no formatting per recipient.
		each := make([]string, 0, len(t.idx))
		for _, i := range t.idx {
			r := res[i]
			each = append(each, r.Rcpt+"="+r.Status.String()+" "+r.Enhanced.String())
		}
		extra = append(extra, slog.String("results", strings.Join(each, ", ")))
	}
	for _, i := range t.idx {
		if res[i].MaybeDuplicate {
			extra = append(extra, slog.Bool("maybe_duplicate", true))
			break
		}
	}
	hop := t.s.target.host + "[" + t.s.target.addr + "]"
	var reply string
	if t.last != nil {
		reply = t.last.text()
		if t.lastStep != "" {
			reply += " (in reply to " + t.lastStep + ")"
		}
	}
	t.d.log(t.d.rcpts(t.idx), hop, t.s.tlsDesc, reply, outcome, extra...)
}
