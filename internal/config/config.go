// Package config reads smimegate's one TOML file, fills in the defaults and
// validates every key, so that a mistake is reported with the file, the line,
// the key and what was expected rather than discovered at the first message.
//
// The key names are the operator's interface (README.md, Configuration) and
// do not change under a running installation; the extra keys are the
// knobs a demanding operator expects (Postfix's limits and queue timers).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"smimegate/internal/smtp"

	toml "github.com/pelletier/go-toml/v2"
)

// DefaultFile is where the commands look when -config is not given.
const DefaultFile = "smimegate.toml"

// Config is the whole configuration, after defaults and validation.
// Paths are absolute: relative ones are taken relative to the directory of the
// configuration file, so that a configuration and its keys can move together.
type Config struct {
	Hostname     string   `toml:"hostname"`
	StateDir     string   `toml:"state_dir"`
	LocalDomains []string `toml:"local_domains"`
	LogLevel     string   `toml:"log_level"`

	SMTP       SMTP       `toml:"smtp"`
	Relay      Relay      `toml:"relay"`
	Certs      Certs      `toml:"certs"`
	Policy     Policy     `toml:"policy"`
	Queue      Queue      `toml:"queue"`
	Quarantine Quarantine `toml:"quarantine"`
	Limits     Limits     `toml:"limits"`
	Discovery  Discovery  `toml:"discovery"`
	Admin      Admin      `toml:"admin"`

	// File is the configuration file this was read from ("" for defaults only).
	File string `toml:"-"`
}

// SMTP configures the receiver. The limits follow Postfix's defaults where
// Postfix has one (the parameter name is given beside each).
type SMTP struct {
	Listen          []string `toml:"listen"`
	TrustedNetworks []string `toml:"trusted_networks"` // mynetworks
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`

	MaxRecipients           int      `toml:"max_recipients"`             // smtpd_recipient_limit = 1000
	MaxLineLength           int      `toml:"max_line_length"`            // longest DATA line, CRLF excluded
	MaxHeaderBytes          int      `toml:"max_header_bytes"`           // header_size_limit = 102400
	MaxConnections          int      `toml:"max_connections"`            // default_process_limit = 100
	MaxConnectionsPerClient int      `toml:"max_connections_per_client"` // smtpd_client_connection_count_limit = 50
	CommandTimeout          Duration `toml:"command_timeout"`            // smtpd_timeout = 300s
	MinDataRate             int      `toml:"min_data_rate"`              // smtpd_min_data_rate = 500 bytes/s
	ErrorLimit              int      `toml:"error_limit"`                // smtpd_hard_error_limit = 20
	JunkCommandLimit        int      `toml:"junk_command_limit"`         // smtpd_junk_command_limit = 100
	// TrustedReserve is how many of MaxConnections only clients in the
	// trusted networks may take, so that outsiders cannot starve the
	// internal mail servers of connection slots.
	TrustedReserve int `toml:"trusted_reserve"`
	// MaxSessionTime bounds a whole SMTP session, however busy: past it the
	// connection is closed with 421 after the reply in progress.
	MaxSessionTime Duration `toml:"max_session_time"`
	// VerifyRecipients asks relay.inbound at RCPT time whether it accepts a
	// recipient in a local domain (Postfix's reject_unverified_recipient),
	// so that unknown recipients are refused before any content; the
	// answers are cached for VerifyPositiveTTL and VerifyNegativeTTL.
	VerifyRecipients  bool     `toml:"verify_recipients"`
	VerifyPositiveTTL Duration `toml:"verify_positive_ttl"` // address_verify_positive_refresh_time
	VerifyNegativeTTL Duration `toml:"verify_negative_ttl"` // address_verify_negative_refresh_time

	// Parsed forms, filled by validation.
	TrustedPrefixes []netip.Prefix `toml:"-"`
}

// Relay configures the courier: where mail goes next.
type Relay struct {
	Outbound string            `toml:"outbound"` // host:port or "mx"
	Inbound  string            `toml:"inbound"`  // host:port or "mx"
	Routes   map[string]string `toml:"routes"`   // destination domain -> host:port or "mx"

	TLS       string            `toml:"tls"`        // none | opportunistic | required | verify
	RouteTLS  map[string]string `toml:"route_tls"`  // destination domain -> TLS mode
	DNSServer string            `toml:"dns_server"` // "" = the system resolver; host:port otherwise

	HeloName              string   `toml:"helo_name"`                      // default: hostname
	MaxConnections        int      `toml:"max_connections"`                // default_destination... total, 100
	MaxPerDestination     int      `toml:"max_per_destination"`            // default_destination_concurrency_limit = 20
	ConnectTimeout        Duration `toml:"connect_timeout"`                // smtp_connect_timeout = 30s
	CommandTimeout        Duration `toml:"command_timeout"`                // smtp_*_timeout, 300s
	DataDoneTimeout       Duration `toml:"data_done_timeout"`              // smtp_data_done_timeout = 600s
	MaxRecipientsPerTrans int      `toml:"max_recipients_per_transaction"` // smtp_destination_recipient_limit = 50
}

// Certs says where the domain certificates live.
type Certs struct {
	Own      string   `toml:"own"`
	Partners string   `toml:"partners"`
	Names    []string `toml:"names"`
	// HostNames lets a subjectAltName dNSName or smtp:// URI also name a
	// domain (draft-melnikov-smime-msa-to-mda); false: only the mailbox
	// forms built from Names.
	HostNames bool `toml:"host_names"`
	// TrustAnchors, if set, is a directory of CA certificates that partner
	// certificates must chain to. Empty: partner certificates are trusted as
	// imported (the usual practice between gateways: out-of-band exchange).
	TrustAnchors string `toml:"trust_anchors"`
	// AllowPublicSuffix lists public suffixes (com, co.uk, github.io: the
	// Public Suffix List) that a domain certificate may nevertheless name.
	// A certificate naming any other public suffix is refused: it would
	// capture the mail of every domain under it.
	AllowPublicSuffix []string `toml:"allow_public_suffix"`
	// Revocation says how CRL and OCSP answers are used when TrustAnchors
	// is set: strict (revoked, or status unknown for longer than
	// RevocationGrace, means unusable), soft (only a known revocation), off.
	Revocation      string   `toml:"revocation"`
	RevocationGrace Duration `toml:"revocation_grace"`
	// RevocationMaxAge bounds how long an OCSP answer is trusted when its
	// nextUpdate is later or absent.
	RevocationMaxAge Duration `toml:"revocation_max_age"`
	// Harvest adds partner encryption certificates learnt from verified
	// domain signatures to partners/harvested/; the default is true when
	// TrustAnchors is set.
	Harvest bool `toml:"harvest"`
	// KeyPassphraseFile / KeyPassphraseEnv unlock encrypted PKCS#8 and PKCS#12 keys.
	KeyPassphraseFile string `toml:"key_passphrase_file"`
	KeyPassphraseEnv  string `toml:"key_passphrase_env"`
}

// Policy decides the treatment of each destination domain.
type Policy struct {
	MixedRecipients string `toml:"mixed_recipients"` // split | reject
	Cipher          string `toml:"cipher"`
	RSAPadding      string `toml:"rsa_padding"` // pkcs1v15 | oaep
	KeyID           string `toml:"key_id"`      // issuer_serial | ski
	ProtectSubject  bool   `toml:"protect_subject"`
	// Allow3DES lets inbound 3DES-CBC messages be opened (legacy peers).
	Allow3DES bool `toml:"allow_3des"`
	// RequireAEAD quarantines inbound messages that use unauthenticated CBC
	// (EFAIL). Off by default because many peers still send CBC.
	RequireAEAD bool `toml:"require_aead"`
	// Sign: mail to partner domains is signed with our domain certificate
	// (RFC 3183) before it is encrypted.
	Sign bool `toml:"sign"`
	// KeepDomainSignature keeps a verified domain signature layer on
	// inbound mail instead of removing it (RFC 3183 section 3.2.3).
	KeepDomainSignature bool `toml:"keep_domain_signature"`

	Partners map[string]Partner `toml:"partners"`
}

// Partner overrides the policy for one partner domain (and its sub-domains
// that have no entry of their own).
type Partner struct {
	Cipher      string `toml:"cipher"`
	RSAPadding  string `toml:"rsa_padding"`
	KeyID       string `toml:"key_id"`
	Require     bool   `toml:"require"`
	RequireAEAD *bool  `toml:"require_aead"`
	// Sign overrides policy.sign for mail to this partner.
	Sign *bool `toml:"sign"`
	// RequireSignature: inbound mail claiming this domain must carry its
	// valid domain signature (RFC 3183), else it is quarantined.
	RequireSignature bool `toml:"require_signature"`
	// RequirePQ: encrypt only to this partner's post-quantum (ML-KEM or
	// composite) certificates, and hold mail when it has none.
	RequirePQ bool `toml:"require_pq"`
}

// Queue holds the queue manager's timers (Postfix names beside each).
type Queue struct {
	Lifetime     Duration `toml:"lifetime"`      // maximal_queue_lifetime = 5d
	MinBackoff   Duration `toml:"min_backoff"`   // minimal_backoff_time = 300s
	MaxBackoff   Duration `toml:"max_backoff"`   // maximal_backoff_time = 4000s
	DelayWarning Duration `toml:"delay_warning"` // delay_warning_time = 0 (off)
	// HoldLifetime bounds how long mail for a require=true partner without a
	// usable certificate is held before it is bounced.
	HoldLifetime Duration `toml:"hold_lifetime"`
	// ShutdownGrace bounds how long SIGTERM waits for attempts in flight.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// RelayFirst: a message of at most RelayFirstMaxBytes is processed and
	// offered to its next hops while the client waits for the reply to its
	// DATA; the 250 then follows the next hops' 250, and only what they did
	// not accept is committed to the spool (amavisd-new's and Postfix's
	// smtpd_proxy_filter way). Off: every message is committed first.
	RelayFirst         bool  `toml:"relay_first"`
	RelayFirstMaxBytes int64 `toml:"relay_first_max_bytes"`
	// RelayFirstTimeout bounds the part of a relay-first attempt before the
	// content is sent (connection, greeting, TLS, MAIL, RCPT): past it, the
	// message is committed to the spool and the client gets its 250.
	RelayFirstTimeout Duration `toml:"relay_first_timeout"`
}

// Quarantine bounds what undecryptable mail may take: outsiders decide how
// much of it arrives.
type Quarantine struct {
	MaxBytes    int64    `toml:"max_bytes"`    // all quarantined messages together
	MaxMessages int      `toml:"max_messages"` // number of quarantined messages
	Lifetime    Duration `toml:"lifetime"`     // quarantined messages older than this are deleted
}

// Limits bounds the resources of the whole gateway.
type Limits struct {
	// Memory is the budget for messages being processed, as bytes ("512MiB",
	// "2GiB", "1073741824") or as a share of the machine's memory ("25%").
	// Every message reserves what its processing needs before it starts,
	// and waits while the budget is spent.
	Memory string `toml:"memory"`
	// MemoryBytes is Memory resolved, filled by validation.
	MemoryBytes int64 `toml:"-"`
}

// Admin configures the HTTP listener for /metrics, /healthz and the queue
// commands of a running gateway.
type Admin struct {
	Listen string `toml:"listen"`
	// Hosts are further Host header values the admin listener answers
	// (beside its own address and hostname): no DNS-rebinding page reads it.
	Hosts []string `toml:"hosts"`
	// MetricsAuth requires the token for /metrics and /healthz too.
	MetricsAuth bool `toml:"metrics_auth"`
	// PProf serves /debug/pprof (with the token).
	PProf bool `toml:"pprof"`
	// TLSCert and TLSKey serve the listener over TLS; required for a
	// listener that is not on loopback.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
}

// Discovery configures the lookup of partner certificates in DNS.
type Discovery struct {
	// SMIMEA looks domain certificates up as SMIMEA records (RFC 8162),
	// DNSSEC-validated answers only.
	SMIMEA bool `toml:"smimea"`
	// DNSServer is a validating resolver (host:port) whose AD bit is
	// trusted; "" is the system resolver.
	DNSServer string `toml:"dns_server"`
}

// The accepted values of the enumerated keys.
var (
	Ciphers         = []string{"aes128-gcm", "aes256-gcm", "aes128-cbc", "aes192-cbc", "aes256-cbc"}
	RSAPaddings     = []string{"pkcs1v15", "oaep"}
	KeyIDs          = []string{"issuer_serial", "ski"}
	MixedPolicies   = []string{"split", "reject"}
	TLSModes        = []string{"none", "opportunistic", "required", "verify"}
	RevocationModes = []string{"strict", "soft", "off"}
	LogLevels       = []string{"debug", "info", "warn", "error"}
	defaultCertName = []string{"smg_encryptor", "domain-confidentiality-authority"}
)

// Default returns the configuration used for every key the file leaves out.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if a, err := smtp.CanonicalDomain(host); err == nil {
		host = a
	}
	return &Config{
		Hostname: host,
		StateDir: "/var/lib/smimegate",
		LogLevel: "info",
		SMTP: SMTP{
			Listen:                  []string{"127.0.0.1:2525"},
			TrustedNetworks:         []string{"127.0.0.0/8", "::1/128"},
			MaxMessageBytes:         52428800,
			MaxRecipients:           1000,
			MaxLineLength:           10000,
			MaxHeaderBytes:          102400,
			MaxConnections:          100,
			MaxConnectionsPerClient: 50,
			CommandTimeout:          Duration(300 * time.Second),
			MinDataRate:             500,
			ErrorLimit:              20,
			JunkCommandLimit:        100,
			TrustedReserve:          10,
			MaxSessionTime:          Duration(time.Hour),
			VerifyPositiveTTL:       Duration(24 * time.Hour),
			VerifyNegativeTTL:       Duration(time.Hour),
		},
		Relay: Relay{
			Outbound:              "mx",
			TLS:                   "opportunistic",
			MaxConnections:        100,
			MaxPerDestination:     20,
			ConnectTimeout:        Duration(30 * time.Second),
			CommandTimeout:        Duration(300 * time.Second),
			DataDoneTimeout:       Duration(600 * time.Second),
			MaxRecipientsPerTrans: 50,
		},
		Certs: Certs{
			Own:       "/etc/smimegate/own",
			Partners:  "/etc/smimegate/partners",
			Names:     slices.Clone(defaultCertName),
			HostNames: true,
			// Empty rather than nil, as a file's "[]" decodes.
			AllowPublicSuffix: []string{},
			Revocation:        "strict",
			RevocationGrace:   Duration(24 * time.Hour),
			RevocationMaxAge:  Duration(7 * 24 * time.Hour),
		},
		Policy: Policy{
			MixedRecipients: "split",
			Cipher:          "aes256-gcm",
			RSAPadding:      "pkcs1v15",
			KeyID:           "issuer_serial",
			// RFC 9788: the outer Subject is "[...]"; between gateways
			// the receiver restores the inner header, so nothing is lost.
			ProtectSubject: true,
		},
		Queue: Queue{
			Lifetime:      Duration(5 * 24 * time.Hour),
			MinBackoff:    Duration(300 * time.Second),
			MaxBackoff:    Duration(4000 * time.Second),
			HoldLifetime:  Duration(5 * 24 * time.Hour),
			ShutdownGrace: Duration(30 * time.Second),

			RelayFirst:         true,
			RelayFirstMaxBytes: 256 << 10,
			RelayFirstTimeout:  Duration(10 * time.Second),
		},
		Quarantine: Quarantine{
			MaxBytes:    1 << 30,
			MaxMessages: 10000,
			Lifetime:    Duration(30 * 24 * time.Hour),
		},
		Limits: Limits{Memory: "25%"},
		Admin:  Admin{Listen: "127.0.0.1:8025", Hosts: []string{}},
	}
}

// ErrNoFile is returned (wrapped) by Load when the file does not exist, so
// that `serve` can print the quick-start screen instead of an error.
var ErrNoFile = errors.New("configuration file not found")

// Error is a configuration mistake, located in the file.
type Error struct {
	File string
	Line int    // 0 when the key is absent from the file
	Key  string // dotted key, e.g. policy.cipher
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, completes and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrNoFile)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse is Load for data already in memory; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.File = path
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		// A number given for a duration can fail inside UnmarshalText,
		// where the decoder loses the position; locate it here instead.
		if lines, kinds, kerr := keyLines(data); kerr == nil {
			v := validator{cfg: cfg, lines: lines, kinds: kinds}
			if v.durationsAreStrings(); len(v.errs) > 0 {
				return nil, errors.Join(v.errs...)
			}
		}
		return nil, decodeError(path, err)
	}
	lines, kinds, err := keyLines(data)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	v := validator{cfg: cfg, lines: lines, kinds: kinds}
	v.durationsAreStrings()
	v.validate()
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return cfg, nil
}

func decodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var errs []error
		for i := range strict.Errors {
			de := &strict.Errors[i]
			row, _ := de.Position()
			errs = append(errs, &Error{File: path, Line: row, Key: strings.Join(de.Key(), "."), Msg: "unknown key (see `smimegate check-config` for the known ones)"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		// The library prefixes every message with "toml: "; the file name
		// and line already say where the text comes from.
		return &Error{File: path, Line: row, Key: strings.Join(de.Key(), "."), Msg: plainTypeError(strings.TrimPrefix(de.Error(), "toml: "))}
	}
	return &Error{File: path, Msg: err.Error()}
}

// typeMismatch matches the decoder's message for a value of the wrong type,
// which names Go types that mean nothing to an operator.
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:struct field \S+ of type )?(\S+)$`)

// expected says in TOML terms what a Go type of Config wants.
var expected = map[string]string{
	"string":            "a string",
	"[]string":          "an array of strings",
	"bool":              "true or false",
	"int":               "an integer",
	"int64":             "an integer",
	"map[string]string": "a table of strings",
	"config.Duration":   `a duration string such as "300s" or "5d"`,
	"*bool":             "true or false",
}

// plainTypeError rewrites a type mismatch as "expected X, not a TOML Y";
// other messages pass unchanged.
func plainTypeError(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want, ok := expected[m[2]]
	if !ok {
		want = "a table" // a struct: a [section] or a [policy.partners."DOMAIN"] entry
	}
	return fmt.Sprintf("expected %s, not a TOML %s", want, m[1])
}

// PartnerPolicy is the effective policy for a destination domain: the most
// specific [policy.partners] entry that is the domain or one of its parents,
// over the global [policy].
type PartnerPolicy struct {
	Cipher           string
	RSAPadding       string
	KeyID            string
	Require          bool
	RequireAEAD      bool
	Sign             bool
	RequireSignature bool
	RequirePQ        bool
	// Entry is the [policy.partners] key that matched, "" if none did.
	Entry string
}

// PartnerPolicy returns the effective policy for domain (an A-label domain).
func (c *Config) PartnerPolicy(domain string) PartnerPolicy {
	pp := PartnerPolicy{Cipher: c.Policy.Cipher, RSAPadding: c.Policy.RSAPadding, KeyID: c.Policy.KeyID, RequireAEAD: c.Policy.RequireAEAD, Sign: c.Policy.Sign}
	for d := domain; d != ""; d = Parent(d) {
		p, ok := c.Policy.Partners[d]
		if !ok {
			continue
		}
		pp.Entry = d
		if p.Cipher != "" {
			pp.Cipher = p.Cipher
		}
		if p.RSAPadding != "" {
			pp.RSAPadding = p.RSAPadding
		}
		if p.KeyID != "" {
			pp.KeyID = p.KeyID
		}
		pp.Require = p.Require
		if p.RequireAEAD != nil {
			pp.RequireAEAD = *p.RequireAEAD
		}
		if p.Sign != nil {
			pp.Sign = *p.Sign
		}
		pp.RequireSignature = p.RequireSignature
		pp.RequirePQ = p.RequirePQ
		break
	}
	return pp
}

// IsLocal tells whether domain is one of the local domains or a sub-domain
// of one (draft section 5: membership is the rightmost part of the address).
func (c *Config) IsLocal(domain string) bool {
	for d := domain; d != ""; d = Parent(d) {
		if slices.Contains(c.LocalDomains, d) {
			return true
		}
	}
	return false
}

// Parent returns the parent of a domain ("a.b.c" -> "b.c"), "" at the top.
func Parent(domain string) string {
	if i := strings.IndexByte(domain, '.'); i >= 0 {
		return domain[i+1:]
	}
	return ""
}

// Duration is a time.Duration that reads "300s", "1h30m" and also "5d".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	t := time.Duration(d)
	if t != 0 && t%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", t/(24*time.Hour))
	}
	return t.String()
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return fmt.Errorf("%q is not a duration such as 300s, 1h or 5d", s)
		}
		*d = Duration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 300s, 1h or 5d", s)
	}
	*d = Duration(t)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Effective renders the configuration as TOML, every key with its value,
// for `smimegate check-config`.
func (c *Config) Effective() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(true)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
