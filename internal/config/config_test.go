package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"smimegate/internal/smtp"
)

// minimal is the smallest valid file: the two keys without a default.
const minimal = "local_domains = [\"example.org\"]\n[relay]\ninbound = \"10.0.0.5:25\"\n"

// doc builds a file from top-level lines and table sections, adding the
// required keys unless the case sets them itself, so that every case is a
// complete file that differs from a valid one in exactly the key it tests.
func doc(top, sections string) string {
	var b strings.Builder
	if !strings.Contains(top, "local_domains") {
		b.WriteString("local_domains = [\"example.org\"]\n")
	}
	b.WriteString(top)
	if !strings.Contains(sections, "[relay]") {
		b.WriteString("[relay]\ninbound = \"10.0.0.5:25\"\n")
	}
	b.WriteString(sections)
	return b.String()
}

// lineOfText returns the 1-based line on which marker first occurs in s.
func lineOfText(t *testing.T, s, marker string) int {
	t.Helper()
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("marker %q not in document:\n%s", marker, s)
	}
	return strings.Count(s[:i], "\n") + 1
}

// configErrors returns every *Error inside err (Parse joins them).
func configErrors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(e error) {
		if ce, ok := e.(*Error); ok {
			out = append(out, ce)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}

// TestValidationRules covers every rule in validate(), each with the key it
// must name, the line it must point at (the line of at in the file; 0 where
// the key is absent from the file) and a piece of the explanation.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		top, sect string
		key       string
		at        string // text on the line the error must name; "" = no line
		msg       string
	}{
		{"empty hostname", `hostname = ""` + "\n", "", "hostname", `hostname = ""`, "must not be empty"},
		{"hostname with a space", `hostname = "gw example.org"` + "\n", "", "hostname", "hostname =", "not a valid host name"},
		{"bad helo name", "", "[relay]\ninbound = \"mx\"\nhelo_name = \"gw_1.example.org\"\n", "relay.helo_name", "helo_name", "not a valid host name"},
		{"empty state_dir", `state_dir = ""` + "\n", "", "state_dir", `state_dir = ""`, "must not be empty"},
		{"no local domain", "local_domains = []\n", "", "local_domains", "local_domains = []", "no local domain"},
		{"bad local domain", `local_domains = ["exa mple.org"]` + "\n", "", "local_domains", "local_domains", "not a valid domain"},
		{"empty label in local domain", `local_domains = ["a..example.org"]` + "\n", "", "local_domains", "local_domains", "empty label"},
		{"bad log level", `log_level = "loud"` + "\n", "", "log_level", "log_level", `"loud" is not one of debug, info, warn, error`},

		{"no listen address", "", "[smtp]\nlisten = []\n", "smtp.listen", "listen = []", "at least one listen address"},
		{"listen without port", "", "[smtp]\nlisten = [\"127.0.0.1\"]\n", "smtp.listen", "listen =", "not host:port"},
		{"listen port too big", "", "[smtp]\nlisten = [\"127.0.0.1:99999\"]\n", "smtp.listen", "listen =", "no valid port"},
		{"listen named port", "", "[smtp]\nlisten = [\"127.0.0.1:smtp\"]\n", "smtp.listen", "listen =", "no valid port"},
		{"bad trusted network", "", "[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]\n", "smtp.trusted_networks", "trusted_networks", "not an address or CIDR prefix"},
		{"tls cert without key", "", "[smtp]\ntls_cert = \"gw.crt\"\n", "smtp.tls_cert", "tls_cert", "must be set together"},
		{"zero message size", "", "[smtp]\nmax_message_bytes = 0\n", "smtp.max_message_bytes", "max_message_bytes", "positive number"},
		{"zero recipients", "", "[smtp]\nmax_recipients = 0\n", "smtp.max_recipients", "max_recipients", "positive number"},
		{"short lines", "", "[smtp]\nmax_line_length = 997\n", "smtp.max_line_length", "max_line_length", "at least 998"},
		{"zero header", "", "[smtp]\nmax_header_bytes = 0\n", "smtp.max_header_bytes", "max_header_bytes", "positive number"},
		{"zero connections", "", "[smtp]\nmax_connections = -1\n", "smtp.max_connections", "max_connections", "positive number"},
		{"zero per client", "", "[smtp]\nmax_connections_per_client = 0\n", "smtp.max_connections_per_client", "max_connections_per_client", "positive number"},
		{"zero smtp timeout", "", "[smtp]\ncommand_timeout = \"0s\"\n", "smtp.command_timeout", "command_timeout", "positive number"},
		{"negative data rate", "", "[smtp]\nmin_data_rate = -1\n", "smtp.min_data_rate", "min_data_rate", "must not be negative"},
		{"zero error limit", "", "[smtp]\nerror_limit = 0\n", "smtp.error_limit", "error_limit", "positive number"},
		{"zero junk limit", "", "[smtp]\njunk_command_limit = 0\n", "smtp.junk_command_limit", "junk_command_limit", "positive number"},
		{"reserve takes every slot", "", "[smtp]\nmax_connections = 10\ntrusted_reserve = 10\n", "smtp.trusted_reserve", "trusted_reserve", "less than smtp.max_connections (10)"},
		{"negative reserve", "", "[smtp]\ntrusted_reserve = -1\n", "smtp.trusted_reserve", "trusted_reserve", "at least 0"},
		{"zero session time", "", "[smtp]\nmax_session_time = \"0s\"\n", "smtp.max_session_time", "max_session_time", "positive number"},
		{"zero verify ttl", "", "[smtp]\nverify_negative_ttl = \"0s\"\n", "smtp.verify_negative_ttl", "verify_negative_ttl", "positive number"},
		{"zero quarantine bytes", "", "[quarantine]\nmax_bytes = 0\n", "quarantine.max_bytes", "max_bytes", "positive number"},
		{"zero quarantine lifetime", "", "[quarantine]\nlifetime = \"0s\"\n", "quarantine.lifetime", "lifetime", "positive number"},
		{"memory not a size", "", "[limits]\nmemory = \"plenty\"\n", "limits.memory", "memory =", "neither a size"},
		{"memory too small", "", "[limits]\nmemory = \"1MiB\"\n", "limits.memory", "memory =", "least budget"},
		{"bad public suffix", "", "[certs]\nallow_public_suffix = [\"co..uk\"]\n", "certs.allow_public_suffix", "allow_public_suffix", "empty label"},
		{"zero data done timeout", "", "[relay]\ninbound = \"mx\"\ndata_done_timeout = \"0s\"\n", "relay.data_done_timeout", "data_done_timeout", "positive number"},

		{"no inbound hop", "", "[relay]\noutbound = \"mx\"\n", "relay.inbound", "", "no next hop for inbound mail"},
		{"inbound not host:port", "", "[relay]\ninbound = \"mailhost\"\n", "relay.inbound", "inbound =", `neither "mx" nor host:port`},
		{"inbound bad port", "", "[relay]\ninbound = \"10.0.0.5:0\"\n", "relay.inbound", "inbound =", "no valid port"},
		{"outbound bad", "", "[relay]\ninbound = \"mx\"\noutbound = \":25\"\n", "relay.outbound", "outbound =", `neither "mx" nor host:port`},
		{"route bad hop", "", "[relay]\ninbound = \"mx\"\n[relay.routes]\n\"example.net\" = \"10.1.2.3\"\n", "relay.routes.example.net", `"example.net" =`, `neither "mx" nor host:port`},
		{"route bad domain", "", "[relay]\ninbound = \"mx\"\n[relay.routes]\n\"exa mple.net\" = \"mx\"\n", "relay.routes.exa mple.net", `"exa mple.net" =`, "not a valid domain"},
		{"bad tls mode", "", "[relay]\ninbound = \"mx\"\ntls = \"always\"\n", "relay.tls", "tls =", `"always" is not one of none, opportunistic, required, verify`},
		{"bad route tls", "", "[relay]\ninbound = \"mx\"\n[relay.route_tls]\n\"example.net\" = \"strict\"\n", "relay.route_tls.example.net", `"example.net" = "strict"`, "is not one of"},
		{"bad dns server", "", "[relay]\ninbound = \"mx\"\ndns_server = \"8.8.8.8\"\n", "relay.dns_server", "dns_server", "not host:port"},
		{"zero relay connections", "", "[relay]\ninbound = \"mx\"\nmax_connections = 0\n", "relay.max_connections", "max_connections", "positive number"},
		{"zero per destination", "", "[relay]\ninbound = \"mx\"\nmax_per_destination = 0\n", "relay.max_per_destination", "max_per_destination", "positive number"},
		{"zero connect timeout", "", "[relay]\ninbound = \"mx\"\nconnect_timeout = \"0s\"\n", "relay.connect_timeout", "connect_timeout", "positive number"},
		{"negative relay timeout", "", "[relay]\ninbound = \"mx\"\ncommand_timeout = \"-1s\"\n", "relay.command_timeout", "command_timeout", "positive number"},
		{"zero recipients per transaction", "", "[relay]\ninbound = \"mx\"\nmax_recipients_per_transaction = 0\n", "relay.max_recipients_per_transaction", "max_recipients_per_transaction", "positive number"},

		{"no certificate names", "", "[certs]\nnames = []\n", "certs.names", "names = []", "at least one local part"},
		{"address as name", "", "[certs]\nnames = [\"smg_encryptor@example.org\"]\n", "certs.names", "names =", "not a local part"},
		{"empty name", "", "[certs]\nnames = [\"\"]\n", "certs.names", "names =", "not a local part"},

		{"bad mixed policy", "", "[policy]\nmixed_recipients = \"drop\"\n", "policy.mixed_recipients", "mixed_recipients", `"drop" is not one of split, reject`},
		{"bad cipher", "", "[policy]\ncipher = \"rc2-40\"\n", "policy.cipher", "cipher", `"rc2-40" is not one of aes128-gcm`},
		{"bad padding", "", "[policy]\nrsa_padding = \"pss\"\n", "policy.rsa_padding", "rsa_padding", "is not one of pkcs1v15, oaep"},
		{"bad key id", "", "[policy]\nkey_id = \"serial\"\n", "policy.key_id", "key_id", "is not one of issuer_serial, ski"},
		{"bad partner cipher", "", "[policy.partners.\"example.net\"]\ncipher = \"des\"\n", "policy.partners.example.net.cipher", `cipher = "des"`, "is not one of"},
		{"bad partner padding", "", "[policy.partners.\"example.net\"]\nrsa_padding = \"none\"\n", "policy.partners.example.net.rsa_padding", "rsa_padding", "is not one of"},
		{"bad partner key id", "", "[policy.partners.\"example.net\"]\nkey_id = \"x\"\n", "policy.partners.example.net.key_id", "key_id", "is not one of"},
		{"bad partner domain", "", "[policy.partners.\"-bad.example\"]\nrequire = true\n", "policy.partners.-bad.example", `[policy.partners."-bad.example"]`, "not a valid domain"},
		{"bad partner cipher inline", "", "[policy]\npartners = { \"example.net\" = { cipher = \"des\" } }\n", "policy.partners.example.net.cipher", "partners =", "is not one of"},

		{"zero lifetime", "", "[queue]\nlifetime = \"0d\"\n", "queue.lifetime", "lifetime", "positive number"},
		{"zero min backoff", "", "[queue]\nmin_backoff = \"0s\"\n", "queue.min_backoff", "min_backoff", "positive number"},
		{"zero max backoff", "", "[queue]\nmax_backoff = \"0s\"\n", "queue.max_backoff", "max_backoff", "positive number"},
		{"max below min backoff", "", "[queue]\nmin_backoff = \"1h\"\nmax_backoff = \"10m\"\n", "queue.max_backoff", "max_backoff", "must not be shorter than queue.min_backoff"},
		{"negative delay warning", "", "[queue]\ndelay_warning = \"-4h\"\n", "queue.delay_warning", "delay_warning", "must not be negative"},
		{"zero hold lifetime", "", "[queue]\nhold_lifetime = \"0s\"\n", "queue.hold_lifetime", "hold_lifetime", "positive number"},
		{"zero shutdown grace", "", "[queue]\nshutdown_grace = \"0s\"\n", "queue.shutdown_grace", "shutdown_grace", "positive number"},

		{"bad admin listen", "", "[admin]\nlisten = \"8025\"\n", "admin.listen", "listen =", "not host:port"},
		{"bad admin port", "", "[admin]\nlisten = \"127.0.0.1:http\"\n", "admin.listen", "listen =", "no valid port"},
		{"admin on all addresses without TLS", "", "[admin]\nlisten = \":8025\"\n", "admin.listen", "listen =", "not a loopback address: set admin.tls_cert"},
		{"admin on a LAN address without TLS", "", "[admin]\nlisten = \"192.0.2.7:8025\"\n", "admin.listen", "listen =", "not a loopback address"},
		{"admin on a name without TLS", "", "[admin]\nlisten = \"gw.example.org:8025\"\n", "admin.listen", "listen =", "not a loopback address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := doc(tc.top, tc.sect)
			_, err := Parse("/etc/smimegate/smimegate.toml", []byte(src))
			if err == nil {
				t.Fatalf("no error for:\n%s", src)
			}
			errs := configErrors(err)
			if len(errs) != 1 {
				t.Fatalf("want exactly one *Error, got %d: %v", len(errs), err)
			}
			e := errs[0]
			wantLine := 0
			if tc.at != "" {
				// The marker is searched after the top-level lines when the
				// key lives in a section, so that "listen =" finds the one
				// in the section under test.
				off := 0
				if tc.sect != "" && tc.top == "" {
					off = strings.Index(src, tc.sect)
				}
				wantLine = lineOfText(t, src[off:], tc.at) + strings.Count(src[:off], "\n")
			}
			if e.Key != tc.key || e.Line != wantLine || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got key %q line %d msg %q\nwant key %q line %d msg containing %q\nfile:\n%s", e.Key, e.Line, e.Msg, tc.key, wantLine, tc.msg, src)
			}
			// The rendered message is what the operator reads: it must
			// carry the file, the line and the key.
			want := "/etc/smimegate/smimegate.toml"
			if wantLine > 0 {
				want += ":" + strconv.Itoa(wantLine)
			}
			want += ": " + tc.key + ": "
			if !strings.HasPrefix(e.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), want)
			}
		})
	}
}

// TestDecodeErrorsCarryLines checks the errors the TOML decoder raises
// before validation: unknown keys, wrong types, bad durations and syntax.
func TestDecodeErrorsCarryLines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []string // each a whole "file:line: key: msg" prefix
	}{
		{"unknown top-level key", "bogus = 1\n" + minimal,
			[]string{"f.toml:1: bogus: unknown key"}},
		{"unknown key in a table", minimal + "[smtp]\nlisten = [\"127.0.0.1:25\"]\nlistne = [\"x\"]\n",
			[]string{"f.toml:6: smtp.listne: unknown key"}},
		{"two unknown keys", minimal + "[policy]\nciper = \"aes256-gcm\"\n[queue]\nlifetim = \"5d\"\n",
			[]string{"f.toml:5: policy.ciper: unknown key", "f.toml:7: queue.lifetim: unknown key"}},
		{"unknown table", minimal + "[tls]\ncert = \"x\"\n",
			[]string{"f.toml:4: tls: unknown key"}},
		{"bad duration", minimal + "[queue]\n\nlifetime = \"5 days\"\n",
			[]string{`f.toml:6: queue.lifetime: "5 days" is not a duration such as 300s, 1h or 5d`}},
		{"negative days", minimal + "[queue]\nlifetime = \"-2d\"\n",
			[]string{`f.toml:5: queue.lifetime: "-2d" is not a duration`}},
		{"string for a number", minimal + "[smtp]\nmax_message_bytes = \"50M\"\n",
			[]string{"f.toml:5: smtp.max_message_bytes: expected an integer, not a TOML string"}},
		{"float for a number", minimal + "[smtp]\nmax_message_bytes = 1e6\n",
			[]string{"f.toml:5: smtp.max_message_bytes: expected an integer, not a TOML float"}},
		{"string for a list", minimal + "[smtp]\nlisten = \"127.0.0.1:25\"\n",
			[]string{"f.toml:5: smtp.listen: expected an array of strings, not a TOML string"}},
		{"string for a boolean", minimal + "[policy]\nprotect_subject = \"yes\"\n",
			[]string{"f.toml:5: policy.protect_subject: expected true or false, not a TOML string"}},
		{"number for a partner table", minimal + "[policy.partners]\n\"example.net\" = 5\n",
			[]string{"f.toml:5: policy.partners.example.net: expected a table, not a TOML integer"}},
		{"date for a duration", minimal + "[queue]\nlifetime = 2026-11-28\n",
			[]string{`f.toml:5: queue.lifetime: a duration is a string such as "300s", "1h" or "5d", not a TOML localdate`}},
		// A bare number would otherwise be read as nanoseconds: min_backoff
		// = 300, meant as Postfix's seconds, would be 300ns.
		{"integer for a duration", minimal + "[queue]\nmin_backoff = 300\n",
			[]string{`f.toml:5: queue.min_backoff: a duration is a string such as "300s", "1h" or "5d", not a bare number`}},
		{"integer for a duration in smtp", minimal + "[smtp]\ncommand_timeout = 60\n",
			[]string{"f.toml:5: smtp.command_timeout: a duration is a string"}},
		{"float for a duration", minimal + "[queue]\n\nlifetime = 5.5\n",
			[]string{"f.toml:6: queue.lifetime: a duration is a string"}},
		{"syntax error", minimal + "[smtp]\nlisten = [\"127.0.0.1:25\"\n",
			[]string{"f.toml:5: "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.src)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\ndoes not contain %q", msg, w)
				}
			}
			if len(configErrors(err)) != len(tc.want) {
				t.Errorf("want %d located errors, got %v", len(tc.want), err)
			}
		})
	}
}

// TestAllErrorsAtOnce: an operator fixing a file should see every mistake in
// one run, not one per run.
func TestAllErrorsAtOnce(t *testing.T) {
	t.Parallel()
	src := doc(`log_level = "chatty"`+"\n", "[policy]\ncipher = \"rc4\"\n[queue]\nshutdown_grace = \"0s\"\n")
	_, err := Parse("f.toml", []byte(src))
	got := map[string]int{}
	for _, e := range configErrors(err) {
		got[e.Key] = e.Line
	}
	want := map[string]int{"log_level": 2, "policy.cipher": 6, "queue.shutdown_grace": 8}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v (file:\n%s)", got, want, src)
	}
}

func TestDefaultsOfMinimalFile(t *testing.T) {
	t.Parallel()
	c, err := Parse("/etc/smimegate/smimegate.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Hostname != d.Hostname || c.Relay.HeloName != d.Hostname {
		t.Errorf("hostname %q helo %q, want both %q", c.Hostname, c.Relay.HeloName, d.Hostname)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"state_dir", c.StateDir, "/var/lib/smimegate"},
		{"smtp.listen", c.SMTP.Listen, []string{"127.0.0.1:2525"}},
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes, int64(52428800)},
		{"smtp.command_timeout", c.SMTP.CommandTimeout.D(), 300 * time.Second},
		{"relay.outbound", c.Relay.Outbound, "mx"},
		{"relay.tls", c.Relay.TLS, "opportunistic"},
		{"certs.names", c.Certs.Names, []string{"smg_encryptor", "domain-confidentiality-authority"}},
		{"policy.cipher", c.Policy.Cipher, "aes256-gcm"},
		{"policy.mixed_recipients", c.Policy.MixedRecipients, "split"},
		{"queue.lifetime", c.Queue.Lifetime.D(), 5 * 24 * time.Hour},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:8025"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.key, ch.got, ch.want)
		}
	}
	if len(c.SMTP.TrustedPrefixes) != 2 || c.SMTP.TrustedPrefixes[0].String() != "127.0.0.0/8" {
		t.Errorf("trusted prefixes %v", c.SMTP.TrustedPrefixes)
	}
	// Default must hand out fresh slices: a caller that appends to one
	// configuration's names must not change the next one's.
	d.Certs.Names[0] = "changed"
	if Default().Certs.Names[0] != "smg_encryptor" {
		t.Error("Default shares its Names slice between calls")
	}
}

// TestRelativePaths: relative paths are taken against the directory of the
// configuration file, however the file itself was named.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := doc(`state_dir = "spool"`+"\n",
		"[smtp]\ntls_cert = \"tls/gw.crt\"\ntls_key = \"/abs/gw.key\"\n"+
			"[certs]\nown = \"own\"\npartners = \"../partners\"\ntrust_anchors = \"ca\"\nkey_passphrase_file = \"secret/pass\"\n")
	if err := os.WriteFile(filepath.Join(dir, "etc", "smimegate.toml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := Load(filepath.Join("etc", "smimegate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc")
	want := map[string][2]string{
		"state_dir":                 {c.StateDir, filepath.Join(etc, "spool")},
		"smtp.tls_cert":             {c.SMTP.TLSCert, filepath.Join(etc, "tls", "gw.crt")},
		"smtp.tls_key":              {c.SMTP.TLSKey, "/abs/gw.key"},
		"certs.own":                 {c.Certs.Own, filepath.Join(etc, "own")},
		"certs.partners":            {c.Certs.Partners, filepath.Join(dir, "partners")},
		"certs.trust_anchors":       {c.Certs.TrustAnchors, filepath.Join(etc, "ca")},
		"certs.key_passphrase_file": {c.Certs.KeyPassphraseFile, filepath.Join(etc, "secret", "pass")},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(p)
	if !errors.Is(err, ErrNoFile) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load of a missing file: %v, want ErrNoFile naming %s", err, p)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"5d", 5 * 24 * time.Hour, "5d"},
		{"1d", 24 * time.Hour, "1d"},
		{"0d", 0, "0s"},
		{"300s", 300 * time.Second, "5m0s"},
		{"1h30m", 90 * time.Minute, "1h30m0s"},
		{"48h", 48 * time.Hour, "2d"},
		{"1500ms", 1500 * time.Millisecond, "1.5s"},
	}
	for _, g := range good {
		var d Duration
		if err := d.UnmarshalText([]byte(g.in)); err != nil {
			t.Errorf("%q: %v", g.in, err)
			continue
		}
		if d.D() != g.want || d.String() != g.str {
			t.Errorf("%q = %v (%q), want %v (%q)", g.in, d.D(), d.String(), g.want, g.str)
		}
		// What check-config prints must read back as the same duration.
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("%q: MarshalText %q reads back as %v, %v", g.in, b, back, err)
		}
	}
	for _, bad := range []string{"", "d", "5", "5 d", "-1d", "1.5d", "5days", "5dd", "x"} {
		var d Duration
		err := d.UnmarshalText([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), "not a duration") {
			t.Errorf("%q: err %v, want \"not a duration\"", bad, err)
		}
	}
}

// TestPartnerPolicy: the most specific [policy.partners] entry that is the
// domain or a parent of it wins, whole, over the global policy (draft section
// 4: most specific to least specific); entries do not merge with each other.
func TestPartnerPolicy(t *testing.T) {
	t.Parallel()
	src := doc("", `[policy]
cipher = "aes128-gcm"
rsa_padding = "pkcs1v15"
require_aead = true
[policy.partners."example.net"]
cipher = "aes256-cbc"
require = true
require_aead = false
[policy.partners."sub.example.net"]
rsa_padding = "oaep"
key_id = "ski"
[policy.partners."Bücher.Example"]
cipher = "aes192-cbc"
`)
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		domain string
		want   PartnerPolicy
	}{
		{"example.net", PartnerPolicy{Cipher: "aes256-cbc", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", Require: true, RequireAEAD: false, Entry: "example.net"}},
		{"other.example.net", PartnerPolicy{Cipher: "aes256-cbc", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", Require: true, RequireAEAD: false, Entry: "example.net"}},
		{"sub.example.net", PartnerPolicy{Cipher: "aes128-gcm", RSAPadding: "oaep", KeyID: "ski", RequireAEAD: true, Entry: "sub.example.net"}},
		{"deep.sub.example.net", PartnerPolicy{Cipher: "aes128-gcm", RSAPadding: "oaep", KeyID: "ski", RequireAEAD: true, Entry: "sub.example.net"}},
		{"notexample.net", PartnerPolicy{Cipher: "aes128-gcm", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", RequireAEAD: true}},
		{"net", PartnerPolicy{Cipher: "aes128-gcm", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", RequireAEAD: true}},
		{"xn--bcher-kva.example", PartnerPolicy{Cipher: "aes192-cbc", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", RequireAEAD: true, Entry: "xn--bcher-kva.example"}},
		{"mail.xn--bcher-kva.example", PartnerPolicy{Cipher: "aes192-cbc", RSAPadding: "pkcs1v15", KeyID: "issuer_serial", RequireAEAD: true, Entry: "xn--bcher-kva.example"}},
	}
	for _, tc := range cases {
		if got := c.PartnerPolicy(tc.domain); got != tc.want {
			t.Errorf("PartnerPolicy(%q) = %+v, want %+v", tc.domain, got, tc.want)
		}
	}
}

func TestIsLocal(t *testing.T) {
	t.Parallel()
	c, err := Parse("f.toml", []byte(doc(`local_domains = ["Example.ORG", "bücher.example", "corp.example.com."]`+"\n", "")))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.org", "xn--bcher-kva.example", "corp.example.com"}; !reflect.DeepEqual(c.LocalDomains, want) {
		t.Fatalf("local_domains = %q, want %q", c.LocalDomains, want)
	}
	cases := map[string]bool{
		"example.org":                true,
		"sub.example.org":            true,
		"a.b.example.org":            true,
		"badexample.org":             false,
		"org":                        false,
		"example.net":                false,
		"xn--bcher-kva.example":      true,
		"mail.xn--bcher-kva.example": true,
		"example":                    false,
		"corp.example.com":           true,
		"x.corp.example.com":         true,
		"example.com":                false,
		"":                           false,
	}
	for d, want := range cases {
		if got := c.IsLocal(d); got != want {
			t.Errorf("IsLocal(%q) = %v, want %v", d, got, want)
		}
	}
}

// TestDomainsAreCanonicalised: every domain the file names goes through
// smtp.CanonicalDomain, so it is stored in the one form in which it is
// compared, and one with no such form is an error that names it once.
func TestDomainsAreCanonicalised(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"example.org":           "example.org",
		"EXAMPLE.Org":           "example.org",
		"example.org.":          "example.org",
		"bücher.example":        "xn--bcher-kva.example",
		"BÜCHER.example":        "xn--bcher-kva.example",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"例え.テスト":                "xn--r8jz45g.xn--zckzah",
	}
	for in, want := range good {
		c, err := Parse("f.toml", []byte(doc(fmt.Sprintf("local_domains = [%q]\n", in), "")))
		if err != nil || len(c.LocalDomains) != 1 || c.LocalDomains[0] != want {
			t.Errorf("local_domains = [%q]: %v, %v; want %q", in, c, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", ".example.org", "-a.example", "a_b.example", "ex ample.org", "[127.0.0.1]", "10.0.0.1", strings.Repeat("a.", 127) + "example"} {
		_, err := Parse("f.toml", []byte(doc(fmt.Sprintf("local_domains = [%q]\n", bad), "")))
		if err == nil {
			t.Errorf("local_domains = [%q] accepted", bad)
			continue
		}
		if q := fmt.Sprintf("%q", bad); strings.Count(err.Error(), q) > 1 {
			t.Errorf("local_domains = [%q]: the error names the domain %d times: %v", bad, strings.Count(err.Error(), q), err)
		}
	}
}

// TestHostNameIsALabel: the names smimegate says in SMTP are A-labels.
func TestHostNameIsALabel(t *testing.T) {
	t.Parallel()
	c, err := Parse("f.toml", []byte(doc(`hostname = "Gw.Bücher.example"`+"\n", "")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "gw.xn--bcher-kva.example" || c.Relay.HeloName != c.Hostname {
		t.Errorf("hostname %q, helo_name %q", c.Hostname, c.Relay.HeloName)
	}
}

func TestRoutesAndPartnersAreCanonical(t *testing.T) {
	t.Parallel()
	src := doc("", "[relay]\ninbound = \"mx\"\n[relay.routes]\n\"Bücher.example\" = \"10.1.2.3:25\"\n[relay.route_tls]\n\"EXAMPLE.net\" = \"verify\"\n")
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay.Routes["xn--bcher-kva.example"] != "10.1.2.3:25" || len(c.Relay.Routes) != 1 {
		t.Errorf("routes %v", c.Relay.Routes)
	}
	if c.Relay.RouteTLS["example.net"] != "verify" || len(c.Relay.RouteTLS) != 1 {
		t.Errorf("route_tls %v", c.Relay.RouteTLS)
	}
}

func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	c, err := Parse("f.toml", []byte(doc("", "[smtp]\ntrusted_networks = [\"192.0.2.7\", \"10.1.2.3/8\", \"2001:db8::1\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.SMTP.TrustedPrefixes {
		got = append(got, p.String())
	}
	if want := []string{"192.0.2.7/32", "10.0.0.0/8", "2001:db8::1/128"}; !reflect.DeepEqual(got, want) {
		t.Errorf("prefixes %v, want %v", got, want)
	}
}

// TestEffectiveRoundTrip: what check-config prints is itself a valid file
// that gives the same configuration.
func TestEffectiveRoundTrip(t *testing.T) {
	t.Parallel()
	src := doc(`hostname = "gw.example.org"`+"\n",
		"[relay]\ninbound = \"10.0.0.5:25\"\noutbound = \"192.0.2.1:25\"\n[relay.routes]\n\"example.net\" = \"mx\"\n"+
			"[queue]\nlifetime = \"3d\"\nmin_backoff = \"90s\"\n"+
			"[policy.partners.\"example.net\"]\ncipher = \"aes128-cbc\"\nrequire_aead = true\n"+
			"[policy.partners.\"example.com\"]\nrequire = true\n")
	c, err := Parse("/etc/smimegate/smimegate.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("/etc/smimegate/smimegate.toml", out)
	if err != nil {
		t.Fatalf("effective configuration does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip differs:\nfirst  %+v\nsecond %+v\n%s", c, back, out)
	}
	for _, want := range []string{"lifetime = '3d'", "helo_name = 'gw.example.org'", "cipher = 'aes128-cbc'", "hostname = 'gw.example.org'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective configuration lacks %q:\n%s", want, out)
		}
	}
}

// FuzzParse: no input makes Parse panic, and whatever it accepts is printed
// by Effective as a file that parses again to the same configuration.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(doc("", "[policy]\npartners = { \"example.net\" = { cipher = \"aes128-cbc\" } }\n[queue]\nlifetime = \"5d\"\n")))
	f.Add([]byte(doc("", "[relay.routes]\n\"bücher.example\" = \"mx\"\n")))
	f.Add([]byte("x = [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("/etc/smimegate/f.toml", data)
		if err != nil {
			if len(configErrors(err)) == 0 && !strings.HasPrefix(err.Error(), "/etc/smimegate/f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if _, err := smtp.CanonicalDomain(c.Hostname); err != nil {
			// The default hostname is this machine's name, kept even where
			// it is not a valid domain; written into a file it would be
			// refused, so such a machine cannot round-trip it.
			return
		}
		out, err := c.Effective()
		if err != nil {
			t.Fatalf("Effective: %v", err)
		}
		back, err := Parse("/etc/smimegate/f.toml", out)
		if err != nil {
			t.Fatalf("effective configuration does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip differs:\n%+v\n%+v\n%s", c, back, out)
		}
	})
}

// TestREADMEDocumentsEveryKey keeps README.md's configuration section true:
// its check-config block is what Effective prints for the minimal file, and
// its table names every key.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	const begin, end = "<!-- check-config:begin", "<!-- check-config:end -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %s ... %s block", begin, end)
	}
	block := doc[i:j]
	block = block[strings.Index(block, "```toml\n")+len("```toml\n") : strings.LastIndex(block, "```")]

	c, err := Parse("smimegate.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	c.Hostname, c.Relay.HeloName = "HOSTNAME", "HOSTNAME"
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != block {
		t.Errorf("README.md's check-config block differs from the code's defaults; replace it with:\n%s", out)
	}

	// Every key of every table, from the structs' toml tags.
	var missing []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			tag := strings.Split(f.Tag.Get("toml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
				walk(key+".", f.Type)
				continue
			}
			if !strings.Contains(doc, "`"+key+"`") {
				missing = append(missing, key)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	for f := range reflect.TypeFor[Partner]().Fields() {
		tag := f.Tag.Get("toml")
		if !strings.Contains(doc, `policy.partners."DOMAIN".`+tag) && !strings.Contains(doc, "`."+tag+"`") {
			missing = append(missing, "policy.partners.DOMAIN."+tag)
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md's configuration table lacks %v", missing)
	}
}
