package config

import "testing"

// TestAdminListenLoopbackOrTLS: an admin listener on loopback needs no
// TLS; anywhere else it is accepted only with admin.tls_cert and tls_key
// (the refusals are rows of TestErrors).
func TestAdminListenLoopbackOrTLS(t *testing.T) {
	t.Parallel()
	for _, sect := range []string{
		"[admin]\nlisten = \"127.0.0.1:8025\"\n",
		"[admin]\nlisten = \"127.9.9.9:8025\"\n",
		"[admin]\nlisten = \"[::1]:8025\"\n",
		"[admin]\nlisten = \"localhost:8025\"\n",
		"[admin]\nlisten = \"\"\n",
		"[admin]\nlisten = \"192.0.2.7:8025\"\ntls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n",
		"[admin]\nlisten = \":8025\"\ntls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n",
	} {
		if _, err := Parse("/etc/smimegate/smimegate.toml", []byte(doc("", sect))); err != nil {
			t.Errorf("%s: %v", sect, err)
		}
	}
	for hp, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "LOCALHOST:1": true, "[::ffff:127.0.0.1]:1": true,
		":1": false, "0.0.0.0:1": false, "[::]:1": false, "10.0.0.1:1": false, "localhost.example:1": false, "127.0.0.1": false} {
		if got := LoopbackListen(hp); got != want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", hp, got, want)
		}
	}
}
