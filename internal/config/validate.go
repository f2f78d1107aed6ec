package config

// Validation: every key is checked after decoding, and each mistake is
// located by the line its key is set on.

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"smimegate/internal/smtp"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps every dotted key in the document to the line it is set on,
// so that validation errors can point at it, and to the kind of its value.
func keyLines(data []byte) (map[string]int, map[string]unstable.Kind, error) {
	lines := map[string]int{}
	kinds := map[string]unstable.Kind{}
	var p unstable.Parser
	p.Reset(data)
	var prefix []string
	keyOf := func(it unstable.Iterator) []string {
		var parts []string
		for it.Next() {
			parts = append(parts, string(it.Node().Data))
		}
		return parts
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			prefix = keyOf(e.Key())
			lines[strings.Join(prefix, ".")] = lineOf(&p, e)
		case unstable.KeyValue:
			keyValueLines(&p, lines, kinds, prefix, e, keyOf)
		}
	}
	return lines, kinds, p.Error()
}

// keyValueLines records the line of one key = value, and of every key inside
// an inline table value (partners = { "example.net" = { cipher = "..." } }),
// so that errors about those keys are located too.
func keyValueLines(p *unstable.Parser, lines map[string]int, kinds map[string]unstable.Kind, prefix []string, kv *unstable.Node, keyOf func(unstable.Iterator) []string) {
	full := append(slices.Clone(prefix), keyOf(kv.Key())...)
	val := kv.Value()
	kinds[strings.Join(full, ".")] = val.Kind
	line := lineOf(p, val)
	if line == 0 {
		// An empty array or inline table has no position of its own;
		// the key it is assigned to is on the same line.
		if it := kv.Key(); it.Next() {
			line = lineOf(p, it.Node())
		}
	}
	lines[strings.Join(full, ".")] = line
	if val.Kind != unstable.InlineTable {
		return
	}
	for it := val.Children(); it.Next(); {
		if c := it.Node(); c.Kind == unstable.KeyValue {
			keyValueLines(p, lines, kinds, full, c, keyOf)
		}
	}
}

func lineOf(p *unstable.Parser, n *unstable.Node) int {
	if n.Raw.Length == 0 {
		// Containers carry no range of their own; use their first child.
		if c := n.Child(); c != nil && c.Raw.Length > 0 {
			return p.Shape(c.Raw).Start.Line
		}
		return 0
	}
	return p.Shape(n.Raw).Start.Line
}

type validator struct {
	cfg   *Config
	lines map[string]int
	kinds map[string]unstable.Kind
	errs  []error
}

// durationsAreStrings refuses a bare number for a duration key. The decoder
// would store it as nanoseconds (Duration is an int64 underneath), so that
// min_backoff = 300, meant as Postfix's seconds, would silently become 300ns.
func (v *validator) durationsAreStrings() {
	durationType := reflect.TypeFor[Duration]()
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			switch {
			case f.Type == durationType:
				k, ok := v.kinds[key]
				switch {
				case !ok || k == unstable.String:
				case k == unstable.Integer || k == unstable.Float:
					v.fail(key, "a duration is a string such as \"300s\", \"1h\" or \"5d\", not a bare number")
				default:
					v.fail(key, "a duration is a string such as \"300s\", \"1h\" or \"5d\", not a TOML %s", strings.ToLower(k.String()))
				}
			case f.Type.Kind() == reflect.Struct:
				walk(key+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}

func (v *validator) fail(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.cfg.File, Line: v.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(key, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.fail(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.fail(key, "must be a positive number, not %d", n)
	}
}

func (v *validator) path(key string, p *string) {
	if *p == "" || filepath.IsAbs(*p) || v.cfg.File == "" {
		return
	}
	*p = filepath.Join(filepath.Dir(absOr(v.cfg.File)), *p)
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func (v *validator) nextHop(key, hop string) {
	if hop == "mx" {
		return
	}
	host, port, err := net.SplitHostPort(hop)
	if err != nil || host == "" {
		v.fail(key, "%q is neither \"mx\" nor host:port", hop)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.fail(key, "%q has no valid port", hop)
	}
}

// listenAddr checks a host:port that is listened on or dialled. The host may
// be empty (all addresses); the port must be a number, so that "localhost:smtp"
// or a port beyond 65535 is caught here rather than at the first bind.
func (v *validator) listenAddr(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.fail(key, "%q has no valid port (a number from 0 to 65535)", addr)
	}
}

// hostName checks a name that goes into the SMTP greeting or EHLO (RFC 5321
// section 4.1.1.1: a domain, so A-labels) when the file sets it. The default,
// the machine's host name, is left as the system gives it, so that a machine
// with an unusual name can still start with the defaults.
func (v *validator) hostName(key string, name *string) {
	if _, set := v.lines[key]; !set {
		return
	}
	a, err := smtp.CanonicalDomain(*name)
	if err != nil {
		// The error names the name already (smtp.CanonicalDomain).
		v.fail(key, "not a valid host name: %v", err)
		return
	}
	*name = a
}

func (v *validator) domain(key, d string) string {
	a, err := smtp.CanonicalDomain(d)
	if err != nil {
		// The error names the domain already (smtp.CanonicalDomain).
		v.fail(key, "not a valid domain: %v", err)
		return d
	}
	return a
}

func (v *validator) validate() {
	c := v.cfg
	if c.Hostname == "" {
		v.fail("hostname", "must not be empty")
	} else {
		v.hostName("hostname", &c.Hostname)
	}
	if c.StateDir == "" {
		v.fail("state_dir", "must not be empty")
	}
	v.path("state_dir", &c.StateDir)
	if len(c.LocalDomains) == 0 {
		v.fail("local_domains", "no local domain is configured: list the domain(s) this gateway serves, e.g. local_domains = [\"example.org\"]")
	}
	for i, d := range c.LocalDomains {
		c.LocalDomains[i] = v.domain("local_domains", d)
	}
	v.oneOf("log_level", c.LogLevel, LogLevels)

	// [smtp]
	if len(c.SMTP.Listen) == 0 {
		v.fail("smtp.listen", "at least one listen address is needed")
	}
	for _, l := range c.SMTP.Listen {
		v.listenAddr("smtp.listen", l)
	}
	c.SMTP.TrustedPrefixes = nil
	for _, n := range c.SMTP.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, err2 := netip.ParseAddr(n); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				v.fail("smtp.trusted_networks", "%q is not an address or CIDR prefix", n)
				continue
			}
		}
		c.SMTP.TrustedPrefixes = append(c.SMTP.TrustedPrefixes, p.Masked())
	}
	if (c.SMTP.TLSCert == "") != (c.SMTP.TLSKey == "") {
		v.fail("smtp.tls_cert", "tls_cert and tls_key must be set together")
	}
	v.path("smtp.tls_cert", &c.SMTP.TLSCert)
	v.path("smtp.tls_key", &c.SMTP.TLSKey)
	v.positive("smtp.max_message_bytes", c.SMTP.MaxMessageBytes)
	v.positive("smtp.max_recipients", int64(c.SMTP.MaxRecipients))
	if c.SMTP.MaxLineLength < 998 {
		v.fail("smtp.max_line_length", "must be at least 998 (RFC 5322 allows lines that long), not %d", c.SMTP.MaxLineLength)
	}
	v.positive("smtp.max_header_bytes", int64(c.SMTP.MaxHeaderBytes))
	v.positive("smtp.max_connections", int64(c.SMTP.MaxConnections))
	v.positive("smtp.max_connections_per_client", int64(c.SMTP.MaxConnectionsPerClient))
	v.positive("smtp.command_timeout", int64(c.SMTP.CommandTimeout))
	if c.SMTP.MinDataRate < 0 {
		v.fail("smtp.min_data_rate", "must not be negative")
	}
	v.positive("smtp.error_limit", int64(c.SMTP.ErrorLimit))
	v.positive("smtp.junk_command_limit", int64(c.SMTP.JunkCommandLimit))
	if c.SMTP.TrustedReserve < 0 || c.SMTP.MaxConnections > 0 && c.SMTP.TrustedReserve >= c.SMTP.MaxConnections {
		v.fail("smtp.trusted_reserve", "must be at least 0 and less than smtp.max_connections (%d), not %d", c.SMTP.MaxConnections, c.SMTP.TrustedReserve)
	}
	v.positive("smtp.max_session_time", int64(c.SMTP.MaxSessionTime))
	v.positive("smtp.verify_positive_ttl", int64(c.SMTP.VerifyPositiveTTL))
	v.positive("smtp.verify_negative_ttl", int64(c.SMTP.VerifyNegativeTTL))

	// [relay]
	if c.Relay.Inbound == "" {
		v.fail("relay.inbound", "no next hop for inbound mail: set it to the internal mail server, e.g. inbound = \"10.0.0.5:25\"")
	} else {
		v.nextHop("relay.inbound", c.Relay.Inbound)
	}
	v.nextHop("relay.outbound", c.Relay.Outbound)
	routes := map[string]string{}
	for d, hop := range c.Relay.Routes {
		key := "relay.routes." + d
		v.nextHop(key, hop)
		routes[v.domain(key, d)] = hop
	}
	c.Relay.Routes = routes
	v.oneOf("relay.tls", c.Relay.TLS, TLSModes)
	routeTLS := map[string]string{}
	for d, m := range c.Relay.RouteTLS {
		key := "relay.route_tls." + d
		v.oneOf(key, m, TLSModes)
		routeTLS[v.domain(key, d)] = m
	}
	c.Relay.RouteTLS = routeTLS
	if c.Relay.DNSServer != "" {
		v.listenAddr("relay.dns_server", c.Relay.DNSServer)
	}
	if c.Relay.HeloName == "" {
		c.Relay.HeloName = c.Hostname
	} else {
		v.hostName("relay.helo_name", &c.Relay.HeloName)
	}
	v.positive("relay.max_connections", int64(c.Relay.MaxConnections))
	v.positive("relay.max_per_destination", int64(c.Relay.MaxPerDestination))
	v.positive("relay.connect_timeout", int64(c.Relay.ConnectTimeout))
	v.positive("relay.command_timeout", int64(c.Relay.CommandTimeout))
	v.positive("relay.data_done_timeout", int64(c.Relay.DataDoneTimeout))
	v.positive("relay.max_recipients_per_transaction", int64(c.Relay.MaxRecipientsPerTrans))

	// [certs]
	v.path("certs.own", &c.Certs.Own)
	v.path("certs.partners", &c.Certs.Partners)
	v.path("certs.trust_anchors", &c.Certs.TrustAnchors)
	v.path("certs.key_passphrase_file", &c.Certs.KeyPassphraseFile)
	if len(c.Certs.Names) == 0 {
		v.fail("certs.names", "at least one local part is needed (the default is smg_encryptor and domain-confidentiality-authority)")
	}
	for _, n := range c.Certs.Names {
		if n == "" || strings.ContainsAny(n, "@ \t") {
			v.fail("certs.names", "%q is not a local part", n)
		}
	}

	v.oneOf("certs.revocation", c.Certs.Revocation, RevocationModes)
	v.positive("certs.revocation_grace", int64(c.Certs.RevocationGrace))
	v.positive("certs.revocation_max_age", int64(c.Certs.RevocationMaxAge))
	if _, set := v.lines["certs.harvest"]; !set {
		// Harvesting needs a chain to trust: on by default only with
		// trust anchors.
		c.Certs.Harvest = c.Certs.TrustAnchors != ""
	}
	for i, d := range c.Certs.AllowPublicSuffix {
		c.Certs.AllowPublicSuffix[i] = v.domain("certs.allow_public_suffix", d)
	}

	// [policy]
	v.oneOf("policy.mixed_recipients", c.Policy.MixedRecipients, MixedPolicies)
	v.oneOf("policy.cipher", c.Policy.Cipher, Ciphers)
	v.oneOf("policy.rsa_padding", c.Policy.RSAPadding, RSAPaddings)
	v.oneOf("policy.key_id", c.Policy.KeyID, KeyIDs)
	partners := map[string]Partner{}
	for d, p := range c.Policy.Partners {
		key := "policy.partners." + d
		if p.Cipher != "" {
			v.oneOf(key+".cipher", p.Cipher, Ciphers)
		}
		if p.RSAPadding != "" {
			v.oneOf(key+".rsa_padding", p.RSAPadding, RSAPaddings)
		}
		if p.KeyID != "" {
			v.oneOf(key+".key_id", p.KeyID, KeyIDs)
		}
		partners[v.domain(key, d)] = p
	}
	c.Policy.Partners = partners

	// [queue]
	v.positive("queue.lifetime", int64(c.Queue.Lifetime))
	v.positive("queue.min_backoff", int64(c.Queue.MinBackoff))
	v.positive("queue.max_backoff", int64(c.Queue.MaxBackoff))
	if c.Queue.MaxBackoff > 0 && c.Queue.MaxBackoff < c.Queue.MinBackoff {
		v.fail("queue.max_backoff", "must not be shorter than queue.min_backoff")
	}
	if c.Queue.DelayWarning < 0 {
		v.fail("queue.delay_warning", "must not be negative")
	}
	v.positive("queue.hold_lifetime", int64(c.Queue.HoldLifetime))
	v.positive("queue.shutdown_grace", int64(c.Queue.ShutdownGrace))
	v.positive("queue.relay_first_timeout", int64(c.Queue.RelayFirstTimeout))
	if c.Queue.RelayFirstMaxBytes < 0 || c.Queue.RelayFirstMaxBytes > maxRelayFirstBytes {
		v.fail("queue.relay_first_max_bytes", "must be between 0 and %d (messages are held in memory up to this size)", maxRelayFirstBytes)
	}

	// [quarantine]
	v.positive("quarantine.max_bytes", c.Quarantine.MaxBytes)
	v.positive("quarantine.max_messages", int64(c.Quarantine.MaxMessages))
	v.positive("quarantine.lifetime", int64(c.Quarantine.Lifetime))

	// [limits]
	if n, err := parseMemory(c.Limits.Memory, physicalMemory); err != nil {
		v.fail("limits.memory", "%v", err)
	} else {
		c.Limits.MemoryBytes = n
	}

	// [discovery]
	if c.Discovery.DNSServer != "" {
		v.listenAddr("discovery.dns_server", c.Discovery.DNSServer)
	}

	// [admin]
	if c.Admin.Listen != "" {
		v.listenAddr("admin.listen", c.Admin.Listen)
	}
	if (c.Admin.TLSCert == "") != (c.Admin.TLSKey == "") {
		v.fail("admin.tls_cert", "tls_cert and tls_key must be set together")
	}
	v.path("admin.tls_cert", &c.Admin.TLSCert)
	v.path("admin.tls_key", &c.Admin.TLSKey)
	// The token, the session cookie and message headers cross the
	// listener: off loopback, only over TLS.
	if _, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && c.Admin.TLSCert == "" && !LoopbackListen(c.Admin.Listen) {
		v.fail("admin.listen", "%s is not a loopback address: set admin.tls_cert and admin.tls_key, or listen on 127.0.0.1 or [::1]; the admin token and message headers would cross the network in the clear", c.Admin.Listen)
	}
	for i, h := range c.Admin.Hosts {
		if h == "" || strings.ContainsAny(h, "/ \t") {
			v.fail("admin.hosts", "%q is not a host name or host:port", h)
			continue
		}
		c.Admin.Hosts[i] = strings.ToLower(h)
	}
}

// maxRelayFirstBytes bounds queue.relay_first_max_bytes: a relay-first
// message and its sealed copy are in memory for every session at once.
const maxRelayFirstBytes = 16 << 20
