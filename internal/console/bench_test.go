package console

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkGuard measures what the guard adds to a request: GET /healthz
// through the whole admin handler (Host check, routing, security headers)
// against the same answer from a bare handler, in one run, and reports the
// ratio. go test -run XXX -bench Guard ./internal/console
func BenchmarkGuard(b *testing.B) {
	_, s, _ := testServer(b)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	req := httptest.NewRequest("GET", "http://127.0.0.1:8025/healthz", nil)
	// What net/http puts in the context of a connection to the listener.
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8025}))
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("c", 64))
	measure := func(h http.Handler, n int) time.Duration {
		start := time.Now()
		for range n {
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		return time.Since(start)
	}
	if w := httptest.NewRecorder(); func() bool { s.ServeHTTP(w, req); return w.Code != http.StatusOK }() {
		b.Fatalf("the guarded handler refused the benchmark's request")
	}
	var guarded, reference time.Duration
	for b.Loop() {
		guarded += measure(s, 1)
		reference += measure(bare, 1)
	}
	b.ReportMetric(float64(guarded.Nanoseconds())/float64(b.N), "guarded-ns/op")
	b.ReportMetric(float64(reference.Nanoseconds())/float64(b.N), "bare-ns/op")
	b.ReportMetric(float64(guarded)/float64(reference), "ratio")
}
