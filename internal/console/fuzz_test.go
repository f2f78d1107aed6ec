package console

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzCheckHost: whatever the Host header, the guard accepts it only when
// its host part is one the listener answers (its names, the connection's
// own address, localhost on loopback), and never panics.
func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8025", "localhost:8025", "gw.example.org", "GW.EXAMPLE.ORG.:1", "[::1]:8025", "::1", "[::ffff:127.0.0.1]:1",
		"evil.example:8025", "127.0.0.1.nip.io", "127.0.0.1:8025@evil", "[127.0.0.1]", "localhost.", "", "%31%32%37.0.0.1", "0x7f.0.0.1", "2130706433", "127.1"} {
		f.Add(s)
	}
	g := &guard{names: map[string]bool{"gw.example.org": true, "127.0.0.1": true}, exact: map[string]bool{"console.example:443": true}}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8025}
	f.Fuzz(func(t *testing.T, host string) {
		r := &http.Request{Host: host}
		r = r.WithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, local))
		if !g.checkHost(r) {
			return
		}
		h := strings.ToLower(host)
		if g.exact[h] {
			return
		}
		if hp, _, err := net.SplitHostPort(h); err == nil {
			h = hp
		}
		h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
		if g.names[h] || h == "localhost" {
			return
		}
		if ip, err := netip.ParseAddr(h); err == nil && ip.Unmap() == netip.MustParseAddr("127.0.0.1") {
			return
		}
		t.Fatalf("Host %q accepted", host)
	})
}

// FuzzParseToken: only 64 lower-case hex digits, with at most one line
// end, are a token.
func FuzzParseToken(f *testing.F) {
	f.Add([]byte(strings.Repeat("a", 64) + "\n"))
	f.Add([]byte(strings.Repeat("0", 63)))
	f.Add([]byte(strings.Repeat("f", 64) + "\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, ok := parseToken(data)
		if !ok {
			return
		}
		if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" || (string(data) != tok && string(data) != tok+"\n") {
			t.Fatalf("parseToken(%q) = %q", data, tok)
		}
	})
}
