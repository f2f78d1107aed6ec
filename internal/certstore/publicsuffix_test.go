package certstore

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// suffixCases are certificates that name a public suffix, with what the
// refusal must say.
var suffixCases = []struct {
	domain, mailbox, why string
}{
	{"com", "smg_encryptor@com", "ICANN section"},
	{"co.uk", "smg_encryptor@co.uk", "ICANN section"},
	{"github.io", "smg_encryptor@github.io", "private section"},
	{"localhost", "smg_encryptor@localhost", "single-label"},
	{"xn--p1ai", "smg_encryptor@xn--p1ai", "ICANN section"}, // .рф
}

// TestPublicSuffixRefusedAtLoad: a partner certificate that names a public
// suffix is not used (mail to every domain under it would be encrypted to
// it) and is a problem naming the file, the domain and the reason; listed
// in AllowPublicSuffix it is used; example.com is never affected.
func TestPublicSuffixRefusedAtLoad(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	files := map[string]string{}
	for i, c := range suffixCases {
		files[c.domain] = writeFile(t, partners, c.domain+".pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, i%4), emails: []string{c.mailbox}})))
	}
	// A file with a good certificate and a bad one: the good one serves.
	mixed := writeFile(t, partners, "mixed.pem", certPEM(
		makeCert(t, certSpec{key: rsaKey(t, 4), emails: []string{"smg_encryptor@example.com"}}),
		makeCert(t, certSpec{key: rsaKey(t, 5), emails: []string{"smg_encryptor@net"}})))
	// A TLS-style dNSName counts too when host names mark domains.
	hostFile := writeFile(t, partners, "host.pem", certPEM(makeCert(t, certSpec{key: ecKey(t, 0), dnsNames: []string{"org"}, eku: nil})))

	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, HostNames: true})
	probs := problemsText(s)
	for _, c := range suffixCases {
		if m := s.Lookup("victim." + c.domain); m.Domain != "" || len(m.Certs) != 0 {
			t.Errorf("%s: mail to victim.%s is encrypted to %+v", c.domain, c.domain, m)
		}
		want := files[c.domain] + ": certificate "
		line := problemLine(probs, want)
		if line == "" || !strings.Contains(line, "is refused: it names "+c.domain+" (subjectAltName rfc822Name "+c.mailbox+")") ||
			!strings.Contains(line, c.why) || !strings.Contains(line, "certs.allow_public_suffix") {
			t.Errorf("%s: problem %q; want the file, the domain, %q and the key to allow it:\n%s", c.domain, line, c.why, probs)
		}
	}
	if m := s.Lookup("example.com"); len(m.Certs) != 1 {
		t.Errorf("example.com from the mixed file: %+v", m)
	}
	if m := s.Lookup("victim.net"); m.Domain != "" {
		t.Errorf("the public-suffix certificate of the mixed file is used: %+v", m)
	}
	if l := problemLine(probs, mixed+": "); !strings.Contains(l, "names net (") {
		t.Errorf("mixed file: problem %q", l)
	}
	if l := problemLine(probs, hostFile+": "); !strings.Contains(l, "names org (subjectAltName dNSName org)") {
		t.Errorf("host name: problem %q", l)
	}
	for _, c := range s.All() {
		for _, d := range c.Domains {
			if publicSuffixReason(d) != "" {
				t.Errorf("All() lists %s naming public suffix %s", c.Describe(), d)
			}
		}
	}

	// Allowed when listed, and only those listed.
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, HostNames: true, AllowPublicSuffix: []string{"co.uk", "github.io", "xn--p1ai"}})
	for _, d := range []string{"co.uk", "github.io", "xn--p1ai"} {
		if m := s.Lookup("victim." + d); m.Domain != d || len(m.Certs) != 1 {
			t.Errorf("allowed %s: %+v", d, m)
		}
	}
	if m := s.Lookup("victim.com"); m.Domain != "" {
		t.Errorf("com is not allowed but used: %+v", m)
	}
}

// problemLine returns the first line of probs that starts with prefix.
func problemLine(probs, prefix string) string {
	for l := range strings.SplitSeq(probs, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestPublicSuffixOwn: our own certificate that names a public suffix is
// known as ours but its key is not used; allowed, it is used.
func TestPublicSuffixOwn(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k := rsaKey(t, 0)
	file := writeFile(t, own, "ours.pem", append(certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@co.uk"}})), keyPEM(t, k)...))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	w := s.OwnWithoutKey()
	if len(s.Own()) != 1 || len(w) != 1 || w[0].Key != nil || w[0].Status != PublicSuffix || !strings.Contains(w[0].Reason, "names co.uk") {
		t.Fatalf("own %v, without key %+v", s.Own(), w)
	}
	probs := problemsText(s)
	if l := problemLine(probs, file+": "); !strings.Contains(l, "names co.uk") || !strings.Contains(l, "its key is not used") {
		t.Errorf("problem %q:\n%s", l, probs)
	}
	if strings.Contains(probs, "matches no certificate") {
		t.Errorf("the refused certificate's key is reported as a stray:\n%s", probs)
	}
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, AllowPublicSuffix: []string{"co.uk"}})
	if o := s.Own(); len(o) != 1 || o[0].Key == nil || o[0].Status != Valid || len(s.OwnWithoutKey()) != 0 {
		t.Fatalf("allowed: own %+v", o)
	}
}

// TestPublicSuffixRefusedAtImport: `cert import` refuses a certificate
// naming a public suffix with the file, the domain and the reason, unless
// it is allowed; example.com imports as always.
func TestPublicSuffixRefusedAtImport(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	own, partners := testDirs(t)
	opts := Options{OwnDir: own, PartnersDir: partners, Now: func() time.Time { return testNow }}
	for i, c := range suffixCases {
		p := writeFile(t, work, c.domain+".pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, i%4), emails: []string{c.mailbox}})))
		_, err := PrepareImport(opts, p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), "names "+c.domain+" (") ||
			!strings.Contains(err.Error(), c.why) || !strings.HasSuffix(err.Error(), "; not imported") {
			t.Errorf("%s: %v", c.domain, err)
		}
		allowed := opts
		allowed.AllowPublicSuffix = []string{c.domain}
		if im, err := PrepareImport(allowed, p); err != nil || len(im.Certs) != 1 || im.Dest != filepath.Join(partners, c.domain+"-"+im.Certs[0].Fingerprint[:16]+".pem") {
			t.Errorf("%s allowed: %v", c.domain, err)
		}
	}
	p := writeFile(t, work, "example.com.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 5), emails: []string{"smg_encryptor@example.com"}})))
	if _, err := PrepareImport(opts, p); err != nil {
		t.Errorf("example.com: %v", err)
	}
}

// TestPublicSuffixReason: the library's verdicts that the refusal relies
// on, including the default rule for single labels.
func TestPublicSuffixReason(t *testing.T) {
	t.Parallel()
	for d, want := range map[string]string{
		"com": "ICANN", "co.uk": "ICANN", "github.io": "private", "example": "single-label", "xn--p1ai": "ICANN",
		"example.com": "", "sub.example.co.uk": "", "user.github.io": "", "one.example": "",
	} {
		got := publicSuffixReason(d)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
