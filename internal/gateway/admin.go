package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"smimegate/internal/console"
	"smimegate/internal/spool"
)

// AdminOptions are what the admin listener needs besides the gateway.
type AdminOptions struct {
	// Token is the admin token (console.LoadOrCreateToken).
	Token string
	// TLS says the listener serves HTTPS (admin.tls_cert).
	TLS bool
	// Now is the console's clock; time.Now when nil.
	Now func() time.Time
}

// AdminHandler returns the handler of the admin listener: /metrics
// (Prometheus) and /healthz, open unless admin.metrics_auth; the JSON API
// that the queue and quarantine commands use while the gateway runs; the
// operator console; /debug/pprof with admin.pprof. Every request passes
// console's guard first: the Host allow-list, no state change from another
// origin or by a form, and the admin token or a console session for
// everything but /metrics and /healthz. Run the returned server's Run for
// the console's history.
func (g *Gateway) AdminHandler(opts AdminOptions) (*console.Server, error) {
	cfg := g.Config()
	return console.New(console.Options{
		Listen:      cfg.Admin.Listen,
		Hostname:    cfg.Hostname,
		Hosts:       cfg.Admin.Hosts,
		TLS:         opts.TLS,
		MetricsAuth: cfg.Admin.MetricsAuth,
		PProf:       cfg.Admin.PProf,
		Token:       opts.Token,
		Backend:     g,
		API:         g.apiHandler(),
		Metrics:     promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{}),
		Gatherer:    g.metrics.Registry,
		Registerer:  g.metrics.Registry,
		Logger:      g.log,
		Now:         opts.Now,
	})
}

// apiHandler is the JSON API of the queue and the quarantine. Its state
// changes are POSTs without a body; console's guard has checked the
// request before it gets here.
func (g *Gateway) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		envs, err := g.spool.List()
		writeJSON(w, sortEnvelopes(envs), err)
	})
	mux.HandleFunc("GET /queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		env, err := g.spool.Load(id)
		if err != nil {
			writeJSON(w, nil, err)
			return
		}
		data, err := g.spool.ReadData(id, "")
		writeJSON(w, EnvelopeWithHeader{env, string(HeaderSection(data))}, err)
	})
	mux.HandleFunc("POST /queue/flush", func(w http.ResponseWriter, r *http.Request) {
		n := g.Flush()
		g.log.Info("queue flushed by operator", "messages", n)
		writeJSON(w, map[string]int{"scheduled": n}, nil)
	})
	mux.HandleFunc("POST /queue/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		writeJSON(w, map[string]string{"deleted": id}, g.Delete(id))
	})
	mux.HandleFunc("POST /queue/{id}/release-plain", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		n, err := g.ReleasePlain(id)
		writeJSON(w, map[string]any{"released": id, "recipients": n}, err)
	})

	mux.HandleFunc("GET /quarantine", func(w http.ResponseWriter, r *http.Request) {
		envs, err := g.spool.ListQuarantine()
		writeJSON(w, sortEnvelopes(envs), err)
	})
	mux.HandleFunc("GET /quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		env, err := g.spool.LoadQuarantined(id)
		if err != nil {
			writeJSON(w, nil, err)
			return
		}
		data, err := g.spool.ReadQuarantinedData(id)
		writeJSON(w, EnvelopeWithHeader{env, string(HeaderSection(data))}, err)
	})
	mux.HandleFunc("POST /quarantine/{id}/release", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		writeJSON(w, map[string]string{"released": id}, g.Release(id))
	})
	mux.HandleFunc("POST /quarantine/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		err := g.spool.DeleteQuarantined(id)
		if err == nil {
			g.log.Info("deleted from quarantine by operator", "queue_id", id)
		}
		writeJSON(w, map[string]string{"deleted": id}, err)
	})
	return mux
}

// pathID returns the {id} of the request's path, or answers 400 and returns
// false when it is not a queue id. Nothing is done with an id that is not
// one: it would reach the spool's file names and the log as given.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("%q is not a queue id", id)})
		return "", false
	}
	return id, true
}

// EnvelopeWithHeader is the answer to `show`: the envelope and the message's
// header section (never the body).
type EnvelopeWithHeader struct {
	Envelope *spool.Envelope `json:"envelope"`
	Header   string          `json:"header"`
}

func sortEnvelopes(envs []*spool.Envelope) []*spool.Envelope {
	sort.Slice(envs, func(i, j int) bool { return envs[i].Arrival.Before(envs[j].Arrival) })
	return envs
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, spool.ErrNotFound) {
			code = http.StatusNotFound
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Queue lists the queued messages, oldest first (console.Backend).
func (g *Gateway) Queue() ([]*spool.Envelope, error) {
	envs, err := g.spool.List()
	return sortEnvelopes(envs), err
}

// Quarantine lists the quarantined messages, oldest first (console.Backend).
func (g *Gateway) Quarantine() ([]*spool.Envelope, error) {
	envs, err := g.spool.ListQuarantine()
	return sortEnvelopes(envs), err
}

// QuarantinedHeader returns a quarantined message's envelope and header
// section, never its body (console.Backend).
func (g *Gateway) QuarantinedHeader(id string) (*spool.Envelope, []byte, error) {
	env, err := g.spool.LoadQuarantined(id)
	if err != nil {
		return nil, nil, err
	}
	data, err := g.spool.ReadQuarantinedData(id)
	if err != nil {
		return nil, nil, err
	}
	return env, HeaderSection(data), nil
}

// Decisions returns the last decision log lines, oldest first
// (console.Backend).
func (g *Gateway) Decisions() []console.Decision { return g.decisions.Lines() }
