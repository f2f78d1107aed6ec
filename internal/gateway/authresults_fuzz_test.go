package gateway

import (
	"strings"
	"testing"
)

// FuzzForgedField: the authserv-id parser never panics or loops, and a
// value that begins with our hostname as a plain token always counts as
// ours, whatever follows it.
func FuzzForgedField(f *testing.F) {
	for _, s := range []string{"gw.example.net; smime=pass", "(c (d)) \"gw.example.net\" 1; x", "(", "\"", "\\", "gw.example.net"} {
		f.Add(s)
	}
	forged := forgedField("gw.example.net")
	f.Fuzz(func(t *testing.T, v string) {
		_, _ = authservID(v)
		_ = forged("Authentication-Results", v)
		if rest, ok := strings.CutPrefix(v, "gw.example.net"); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ') {
			if !forged("Authentication-Results", v) {
				t.Fatalf("%q names our host and is not taken as ours", v)
			}
		}
	})
}
