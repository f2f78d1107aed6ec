package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

//go:embed templates/*.html templates/app.js templates/style.css
var assets embed.FS

// maxListed bounds the rows one page shows: a queue of a hundred thousand
// messages would make a page no phone can render; the count above the
// table says how many there are, and the commands list them all.
const maxListed = 500

// refreshSeconds is how often the list pages reload themselves.
const refreshSeconds = 30

// pages renders the console.
type pages struct {
	s    *Server
	tmpl *template.Template
	css  string
	js   []byte
	csp  string
}

func newPages(s *Server) *pages {
	css, err := assets.ReadFile("templates/style.css")
	if err != nil {
		panic(err) // embedded: present at build time
	}
	js, err := assets.ReadFile("templates/app.js")
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(css)
	p := &pages{s: s, css: string(css), js: js}
	// The style is inline, allowed by its hash; the script is app.js from
	// this listener; nothing else loads, no form posts, no page frames us.
	p.csp = "default-src 'none'; script-src 'self'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
	p.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"utc":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
		"date":    func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
		"age":     func(t time.Time) string { return humanAge(s.opts.Now().Sub(t)) },
		"join":    strings.Join,
		"num":     func(f float64) string { return fmt.Sprintf("%.0f", f) },
		"chart":   chart,
		"refresh": func() int { return refreshSeconds },
	}).ParseFS(assets, "templates/*.html"))
	return p
}

func (p *pages) routes(mux *http.ServeMux) {
	a := p.s.authenticated
	mux.Handle("GET /console/{$}", a(http.HandlerFunc(p.overview)))
	mux.Handle("GET /console/queue", a(http.HandlerFunc(p.queue)))
	mux.Handle("GET /console/quarantine", a(http.HandlerFunc(p.quarantine)))
	mux.Handle("GET /console/quarantine/{id}", a(http.HandlerFunc(p.quarantined)))
	mux.Handle("GET /console/certificates", a(http.HandlerFunc(p.certificates)))
	mux.Handle("GET /console/partners", a(http.HandlerFunc(p.partners)))
	mux.Handle("GET /console/decisions", a(http.HandlerFunc(p.decisions)))
	mux.Handle("GET /console/confirm/{area}/{verb}/{id}", a(http.HandlerFunc(p.confirm)))
	mux.Handle("GET /console/app.js", a(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(p.js)
	})))
}

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string
	Hostname string
	Now      time.Time
	Refresh  bool
	Style    template.CSS
	Done     string // what the action before this page did
	Error    string
	Data     any
}

func (p *pages) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	v := view{Title: title, Nav: name, Hostname: p.s.opts.Backend.Config().Hostname, Now: p.s.opts.Now(),
		Style: template.CSS(p.css), Data: data, Done: doneText(r)}
	v.Refresh = name == "overview" || name == "queue" || name == "quarantine" || name == "decisions"
	var b bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&b, name+".html", v); err != nil {
		p.s.opts.Logger.Error("console: rendering a page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the log says why", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", p.csp)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// doneText says what the action that led here did (the script adds
// ?done=VERB&id=ID after a successful POST). Only known verbs and valid ids
// are shown.
func doneText(r *http.Request) string {
	verb, id := r.URL.Query().Get("done"), r.URL.Query().Get("id")
	text, ok := doneVerbs[verb]
	if !ok {
		return ""
	}
	if verb == "flush" {
		return text
	}
	if !spool.ValidID(id) {
		return ""
	}
	return fmt.Sprintf(text, id)
}

var doneVerbs = map[string]string{
	"flush":              "Every queued message is due now.",
	"queue-delete":       "Message %s was deleted from the queue.",
	"quarantine-release": "Message %s was released from the quarantine: it is back in the queue.",
	"quarantine-delete":  "Message %s was deleted from the quarantine.",
}

// refuseLogin answers a console page without a session: 403 and a page
// that says how to log in.
func (p *pages) refuseLogin(w http.ResponseWriter, r *http.Request) {
	g := p.s.guard
	g.refused.WithLabelValues(refusedUnauthenticated).Inc()
	if ok, suppressed := g.limiter.allow(time.Now()); ok {
		attrs := []any{"reason", refusedUnauthenticated, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr}
		if suppressed > 0 {
			attrs = append(attrs, "not_logged_before", suppressed)
		}
		g.log.Warn("admin request refused", attrs...)
	}
	p.render(w, r, http.StatusForbidden, "login", "Log in", nil)
}

// overviewData is the overview page.
type overviewData struct {
	Rows          []overviewRow
	Queued        int
	Quarantined   int
	Oldest        time.Time
	OwnWithoutKey []*certstore.Cert
	Expiring      int
	Unusable      int
	Problems      int
}

func (p *pages) overview(w http.ResponseWriter, r *http.Request) {
	b := p.s.opts.Backend
	d := overviewData{Rows: p.s.history.overview()}
	if q, err := b.Queue(); err == nil {
		d.Queued = len(q)
		if len(q) > 0 {
			d.Oldest = q[0].Arrival
		}
	}
	if q, err := b.Quarantine(); err == nil {
		d.Quarantined = len(q)
	}
	store := b.Certs()
	d.OwnWithoutKey = store.OwnWithoutKey()
	for _, c := range store.All() {
		switch {
		case c.Status == certstore.ExpiresSoon:
			d.Expiring++
		case !c.Usable():
			d.Unusable++
		}
	}
	d.Problems = len(store.Problems())
	p.render(w, r, http.StatusOK, "overview", "Overview", d)
}

// queueRow is one queued message.
type queueRow struct {
	ID, Sender  string
	Arrival     time.Time
	Recipients  []string
	NextAttempt time.Time
	Due         bool
	LastError   string
}

func (p *pages) queue(w http.ResponseWriter, r *http.Request) {
	envs, err := p.s.opts.Backend.Queue()
	data := listData[queueRow]{Total: len(envs)}
	if err != nil {
		p.s.opts.Logger.Error("console: listing the queue", "err", err)
		data.Error = "the queue could not be read; the log says why"
	}
	now := p.s.opts.Now()
	for _, env := range envs[:min(len(envs), maxListed)] {
		data.Rows = append(data.Rows, newQueueRow(env, now))
	}
	p.render(w, r, http.StatusOK, "queue", "Queue", data)
}

// listData is a list page: at most maxListed rows of Total.
type listData[T any] struct {
	Rows  []T
	Total int
	Error string
}

func (d listData[T]) Cut() bool { return d.Total > len(d.Rows) }

// newQueueRow says what a queued message waits for, as `queue list` does:
// the recipients still pending (held ones marked), the earliest next
// attempt and the last error.
func newQueueRow(env *spool.Envelope, now time.Time) queueRow {
	row := queueRow{ID: env.ID, Sender: env.Sender, Arrival: env.Arrival, LastError: oneLine(env.LastError)}
	if row.Sender == "" {
		row.Sender = "<>"
	}
	w := env.Waiting()
	row.Recipients, row.LastError = w.Recipients, oneLine(w.LastError)
	next := w.NextAttempt
	row.NextAttempt, row.Due = next, !next.After(now)
	return row
}

// quarantineRow is one quarantined message.
type quarantineRow struct {
	ID, Sender, Reason string
	Recipients         []string
	QuarantinedAt      time.Time
}

func newQuarantineRow(env *spool.Envelope) quarantineRow {
	row := quarantineRow{ID: env.ID, Sender: env.Sender, Reason: oneLine(env.Reason), QuarantinedAt: env.QuarantinedAt}
	if row.Sender == "" {
		row.Sender = "<>"
	}
	for _, rc := range env.Recipients {
		row.Recipients = append(row.Recipients, rc.Addr)
	}
	return row
}

func (p *pages) quarantine(w http.ResponseWriter, r *http.Request) {
	envs, err := p.s.opts.Backend.Quarantine()
	data := listData[quarantineRow]{Total: len(envs)}
	if err != nil {
		p.s.opts.Logger.Error("console: listing the quarantine", "err", err)
		data.Error = "the quarantine could not be read; the log says why"
	}
	for _, env := range envs[:min(len(envs), maxListed)] {
		data.Rows = append(data.Rows, newQuarantineRow(env))
	}
	p.render(w, r, http.StatusOK, "quarantine", "Quarantine", data)
}

// quarantinedData is the page of one quarantined message.
type quarantinedData struct {
	quarantineRow
	Env    *spool.Envelope
	Header string
}

func (p *pages) quarantined(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		p.render(w, r, http.StatusBadRequest, "error", "Not a queue id", "That is not a queue id.")
		return
	}
	env, header, err := p.s.opts.Backend.QuarantinedHeader(id)
	if err != nil {
		p.render(w, r, http.StatusNotFound, "error", "Not in the quarantine", fmt.Sprintf("Message %s is not in the quarantine (released or deleted meanwhile?).", id))
		return
	}
	p.render(w, r, http.StatusOK, "message", "Quarantined message "+id, quarantinedData{quarantineRow: newQuarantineRow(env), Env: env, Header: string(header)})
}

// certRow is one certificate.
type certRow struct {
	Kind, Domains, Subject, Fingerprint, Source string
	NotAfter                                    time.Time
	DaysLeft                                    int
	// Urgency colours the days left: ok, soon (30 days or less), urgent
	// (7 or less), expired.
	Urgency string
	Usable  bool
	Status  string
	Reason  string
}

// Thresholds of the days-left colours: certstore flags a certificate 30
// days ahead (ExpiresSoonWindow), and a week is the last moment to get a
// partner's new certificate by mail.
const (
	soonDays   = 30
	urgentDays = 7
)

func (p *pages) certificates(w http.ResponseWriter, r *http.Request) {
	store := p.s.opts.Backend.Certs()
	now := p.s.opts.Now()
	var rows []certRow
	for _, c := range store.All() {
		row := certRow{Kind: "partner", Domains: strings.Join(c.Domains, ", "), Subject: c.X509.Subject.String(),
			Fingerprint: c.Fingerprint, Source: c.File, NotAfter: c.X509.NotAfter, Usable: c.Usable(),
			Status: c.Status.String(), Reason: c.Reason}
		if c.Own {
			row.Kind = "own"
		}
		if row.Domains == "" {
			row.Domains = "-"
		}
		left := c.X509.NotAfter.Sub(now)
		row.DaysLeft = int(left / (24 * time.Hour))
		switch {
		case left < 0:
			row.Urgency = "expired"
		case left <= urgentDays*24*time.Hour:
			row.Urgency = "urgent"
		case left <= soonDays*24*time.Hour:
			row.Urgency = "soon"
		default:
			row.Urgency = "ok"
		}
		rows = append(rows, row)
	}
	p.render(w, r, http.StatusOK, "certificates", "Certificates", struct {
		Rows     []certRow
		Problems []certstore.Problem
	}{rows, store.Problems()})
}

// partnerRow is one partner domain's policy as it applies.
type partnerRow struct {
	Domain string
	config.PartnerPolicy
	Usable   int
	Unusable int
	CertFrom string // the certificate domain that decides (most specific)
}

func (p *pages) partners(w http.ResponseWriter, r *http.Request) {
	cfg := p.s.opts.Backend.Config()
	store := p.s.opts.Backend.Certs()
	domains := map[string]bool{}
	for d := range cfg.Policy.Partners {
		domains[d] = true
	}
	for _, c := range store.All() {
		if c.Own {
			continue
		}
		for _, d := range c.Domains {
			domains[d] = true
		}
	}
	var rows []partnerRow
	for _, d := range slices.Sorted(maps.Keys(domains)) {
		if cfg.IsLocal(d) {
			continue
		}
		m := store.Lookup(d)
		rows = append(rows, partnerRow{Domain: d, PartnerPolicy: cfg.PartnerPolicy(d), Usable: len(m.Certs), Unusable: len(m.Unusable), CertFrom: m.Domain})
	}
	p.render(w, r, http.StatusOK, "partners", "Partners", struct {
		Rows    []partnerRow
		Default config.PartnerPolicy
	}{rows, cfg.PartnerPolicy("")})
}

// decisionRow is one decision line.
type decisionRow struct {
	Time                                 time.Time
	Level, ID, Direction, Action, Domain string
	Rest                                 []Attr
	Warn                                 bool
}

func (p *pages) decisions(w http.ResponseWriter, r *http.Request) {
	lines := p.s.opts.Backend.Decisions()
	rows := make([]decisionRow, 0, len(lines))
	for i := len(lines) - 1; i >= 0; i-- { // newest first
		d := lines[i]
		row := decisionRow{Time: d.Time, Level: d.Level.String(), Warn: d.Level >= 4}
		for _, a := range d.Attrs {
			switch a.Key {
			case "queue_id":
				row.ID = a.Value
			case "direction":
				row.Direction = a.Value
			case "action":
				row.Action = a.Value
			case "domain":
				row.Domain = a.Value
			default:
				row.Rest = append(row.Rest, a)
			}
		}
		rows = append(rows, row)
	}
	p.render(w, r, http.StatusOK, "decisions", "Recent decisions", struct {
		Rows []decisionRow
		Max  int
	}{rows, MaxDecisions})
}

// confirmData is the page that asks before an action.
type confirmData struct {
	Verb, Area, ID string
	Question       string
	Button         string
	Post           string // the API URL the button posts to
	Done           string // where the browser goes after it
	Command        string // the same action on the command line
	Queue          *queueRow
	Quarantine     *quarantineRow
}

// confirm asks before an action: the page says what will happen to which
// message, and its button posts to the API. Nothing changes on a GET.
func (p *pages) confirm(w http.ResponseWriter, r *http.Request) {
	area, verb, id := r.PathValue("area"), r.PathValue("verb"), r.PathValue("id")
	d := confirmData{Verb: verb, Area: area, ID: id}
	b := p.s.opts.Backend
	switch {
	case area == "queue" && verb == "flush" && id == "all":
		d.Question = "Attempt every queued message now, whatever its retry time?"
		d.Button, d.Post, d.Done, d.Command = "Flush the queue", "/queue/flush", "/console/queue?done=flush", "smimegate queue flush"
	case area == "queue" && verb == "delete" && spool.ValidID(id):
		envs, _ := b.Queue()
		for _, env := range envs {
			if env.ID == id {
				row := newQueueRow(env, p.s.opts.Now())
				d.Queue = &row
			}
		}
		if d.Queue == nil {
			p.render(w, r, http.StatusNotFound, "error", "Not queued", fmt.Sprintf("Message %s is not in the queue (delivered or deleted meanwhile?).", id))
			return
		}
		d.Question = "Delete this message from the queue? It will not be delivered to the recipients still pending, and no one is told."
		d.Button, d.Post, d.Done, d.Command = "Delete", "/queue/"+id+"/delete", "/console/queue?done=queue-delete&id="+id, "smimegate queue delete "+id
	case area == "quarantine" && (verb == "release" || verb == "delete") && spool.ValidID(id):
		env, _, err := b.QuarantinedHeader(id)
		if err != nil {
			p.render(w, r, http.StatusNotFound, "error", "Not in the quarantine", fmt.Sprintf("Message %s is not in the quarantine (released or deleted meanwhile?).", id))
			return
		}
		row := newQuarantineRow(env)
		d.Quarantine = &row
		if verb == "release" {
			d.Question = "Release this message to the queue? The inbound step runs again: it is opened if a key now opens it, else quarantined again."
			d.Button = "Release"
		} else {
			d.Question = "Delete this message from the quarantine for good?"
			d.Button = "Delete"
		}
		d.Post, d.Done, d.Command = "/quarantine/"+id+"/"+verb, "/console/quarantine?done=quarantine-"+verb+"&id="+id, "smimegate quarantine "+verb+" "+id
	default:
		p.render(w, r, http.StatusNotFound, "error", "No such action", "There is no such action.")
		return
	}
	p.render(w, r, http.StatusOK, "confirm", "Confirm", d)
}

// humanAge says how long ago, to the unit that matters.
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
