// Package dnstest runs real DNS software for tests: NSD as the
// authoritative server of test zones, DNSSEC-signed with ldns-signzone
// where asked, and Unbound as the validating resolver in front of it, both
// on loopback ports, both started and stopped by the test.
//
// The test zones live under "test." (RFC 6761), which Unbound would
// otherwise answer itself; the resolver is told not to. A signed zone's
// key-signing key is a trust anchor of the resolver, so its answers come
// back authenticated (AD); an unsigned zone is outside every trust anchor,
// so its answers come back insecure (no AD); a broken zone is signed, then
// its SMIMEA records are altered, so that validation fails (SERVFAIL).
//
// The programs come from Debian (nsd, ldnsutils, unbound). Without them a
// test skips, except under CI (the CI variable set), where it fails.
package dnstest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is one test zone.
type Zone struct {
	Name string // "signed.test"
	// Records are zone file lines with fully qualified owner names, as
	// SMIMEA and SMIMEARaw write them. SOA and NS are added.
	Records []string
	// Signed zones are signed and anchored in the resolver.
	Signed bool
	// Broken zones are signed and anchored, then their SMIMEA records
	// are changed: their signatures no longer verify.
	Broken bool
}

// Resolver is a running NSD and Unbound pair.
type Resolver struct {
	// Addr is the validating resolver's host:port (UDP and TCP).
	Addr string
	// Auth is the authoritative server's host:port.
	Auth string
}

// Tools are the programs a Resolver needs.
var Tools = []string{"nsd", "ldns-keygen", "ldns-signzone", "unbound"}

// Need skips the test when a program is missing, or fails it under CI.
func Need(t testing.TB) {
	t.Helper()
	for _, p := range Tools {
		if _, err := lookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (CI installs nsd, ldnsutils and unbound): %v", p, err)
			}
			t.Skipf("%s is not installed (apt-get install nsd ldnsutils unbound)", p)
		}
	}
}

// lookPath also looks in the sbin directories, where Debian puts the
// daemons and where a user's PATH may not reach.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found", name)
}

// Owner is the SMIMEA owner name of local@domain (RFC 8162 section 3),
// fully qualified.
func Owner(local, domain string) string {
	sum := sha256.Sum256([]byte(local))
	return hex.EncodeToString(sum[:28]) + "._smimecert." + domain + "."
}

// SMIMEA is a zone file line that publishes cert for local@domain with
// usage (1 PKIX-EE, 3 DANE-EE), selector 0, matching type 0.
func SMIMEA(local, domain string, usage int, cert *x509.Certificate) string {
	return SMIMEARaw(local, domain, usage, 0, 0, cert.Raw)
}

// SMIMEARaw is a zone file line of any SMIMEA record.
func SMIMEARaw(local, domain string, usage, selector, matching int, data []byte) string {
	return fmt.Sprintf("%s 300 IN SMIMEA %d %d %d %X", Owner(local, domain), usage, selector, matching, data)
}

// Start starts NSD with the zones and Unbound in front of it, and stops
// both when the test ends.
func Start(t testing.TB, zones ...Zone) *Resolver {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	authPort, resPort := freePort(t), freePort(t)
	var nsdZones, anchors, stubs strings.Builder
	for _, z := range zones {
		file := z.Name + ".zone"
		var zb strings.Builder
		fmt.Fprintf(&zb, "$ORIGIN %s.\n$TTL 300\n", z.Name)
		fmt.Fprintf(&zb, "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n", z.Name, z.Name, z.Name)
		for _, r := range z.Records {
			zb.WriteString(r + "\n")
		}
		writeFile(t, filepath.Join(dir, file), zb.String())
		if z.Signed || z.Broken {
			out := run(t, dir, "ldns-keygen", "-a", "ECDSAP256SHA256", "-k", z.Name)
			key := strings.TrimSpace(string(out))
			// Signatures valid from an hour ago for 30 days: Unbound
			// judges them by the real clock.
			now := time.Now().UTC()
			run(t, dir, "ldns-signzone", "-i", now.Add(-time.Hour).Format("20060102150405"), "-e", now.Add(30*24*time.Hour).Format("20060102150405"), file, key)
			file += ".signed"
			if z.Broken {
				breakSMIMEA(t, filepath.Join(dir, file))
			}
			ds, err := os.ReadFile(filepath.Join(dir, key+".ds"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&anchors, "  trust-anchor: %q\n", strings.Join(strings.Fields(string(ds)), " "))
		}
		fmt.Fprintf(&nsdZones, "zone:\n  name: %q\n  zonefile: %q\n", z.Name, file)
		fmt.Fprintf(&stubs, "stub-zone:\n  name: %q\n  stub-addr: 127.0.0.1@%d\n", z.Name, authPort)
	}
	nsdConf := fmt.Sprintf(`server:
  ip-address: 127.0.0.1
  port: %d
  username: ""
  chroot: ""
  zonesdir: %q
  database: ""
  zonelistfile: %q
  xfrdfile: %q
  xfrdir: %q
  pidfile: %q
  logfile: %q
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
%s`, authPort, dir, filepath.Join(dir, "zone.list"), filepath.Join(dir, "xfrd.state"), dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "nsd.log"), nsdZones.String())
	writeFile(t, filepath.Join(dir, "nsd.conf"), nsdConf)
	unboundConf := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: %q
  logfile: ""
  use-syslog: no
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
  qname-minimisation: no
  val-log-level: 2
  verbosity: 1
  local-zone: "test." nodefault
%s%s`, resPort, dir, filepath.Join(dir, "unbound.pid"), anchors.String(), stubs.String())
	writeFile(t, filepath.Join(dir, "unbound.conf"), unboundConf)

	r := &Resolver{Addr: fmt.Sprintf("127.0.0.1:%d", resPort), Auth: fmt.Sprintf("127.0.0.1:%d", authPort)}
	daemon(t, dir, "nsd", "-c", filepath.Join(dir, "nsd.conf"), "-d")
	waitDNS(t, r.Auth, zones[0].Name)
	daemon(t, dir, "unbound", "-c", filepath.Join(dir, "unbound.conf"), "-d")
	waitDNS(t, r.Addr, zones[0].Name)
	return r
}

// breakSMIMEA changes the last hex digit of every SMIMEA record's data in
// a signed zone file, leaving its signature as it was.
func breakSMIMEA(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\S+\s+\d+\s+IN\s+SMIMEA\s+\d+ \d+ \d+ [0-9a-fA-F]*)([0-9a-fA-F])$`)
	n := 0
	data = re.ReplaceAllFunc(data, func(m []byte) []byte {
		n++
		last := m[len(m)-1]
		repl := byte('0')
		if last == '0' {
			repl = '1'
		}
		return append(bytes.Clone(m[:len(m)-1]), repl)
	})
	if n == 0 {
		t.Fatalf("no SMIMEA record to break in %s", path)
	}
	writeFile(t, path, string(data))
}

// daemon starts a program in the foreground and kills it at the end.
func daemon(t testing.TB, dir, name string, args ...string) {
	t.Helper()
	p, err := lookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

// waitDNS waits until addr answers a query for zone's SOA.
func waitDNS(t testing.TB, addr, zone string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	c := &dns.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if in, _, err := c.Exchange(m, addr); err == nil && in.Rcode == dns.RcodeSuccess {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the DNS server at %s never answered for %s", addr, zone)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t testing.TB, dir, name string, args ...string) []byte {
	t.Helper()
	p, err := lookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback port that is free for TCP and UDP now.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return 0
}
