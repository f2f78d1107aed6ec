package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/pprof"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"smimegate/internal/spool"
)

// AdminHandler serves the admin listener: /metrics (Prometheus), /healthz,
// a plain-text status page at /, and the JSON API that the queue and
// quarantine commands use while the gateway runs. It has no authentication:
// bind admin.listen to loopback (the default) or a management network.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", g.statusPage)
	// Go's profiler, for measuring where a busy gateway spends its time
	// (go tool pprof http://ADMIN/debug/pprof/profile).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

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
		writeJSON(w, EnvelopeWithHeader{env, string(headerOf(data))}, err)
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
		writeJSON(w, EnvelopeWithHeader{env, string(headerOf(data))}, err)
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

func (g *Gateway) statusPage(w http.ResponseWriter, r *http.Request) {
	st := g.state.Load()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "smimegate on %s\n\n", st.cfg.Hostname)
	fmt.Fprintf(w, "local domains:   %v\n", st.cfg.LocalDomains)
	fmt.Fprintf(w, "queued messages: %d\n", g.Pending())
	if q, err := g.spool.ListQuarantine(); err == nil {
		fmt.Fprintf(w, "quarantined:     %d\n", len(q))
	}
	fmt.Fprintf(w, "\ncertificates:\n")
	for _, c := range st.certs.All() {
		kind := "partner"
		if c.Own {
			kind = "own"
		}
		fmt.Fprintf(w, "  %-7s %-40v %s %s\n", kind, c.Domains, c.Status, c.Fingerprint)
	}
	if p := st.certs.Problems(); len(p) > 0 {
		fmt.Fprintf(w, "\nfiles not loaded:\n")
		for _, pr := range p {
			fmt.Fprintf(w, "  %s: %s\n", pr.File, pr.Reason)
		}
	}
}
