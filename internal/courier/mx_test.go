package courier

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// listenPair listens on 127.0.0.1 and 127.0.0.2 with the same port number,
// so that two MX hosts can share Config.MXPort.
func listenPair(t *testing.T) (first, second net.Listener) {
	t.Helper()
	for try := 0; try < 20; try++ {
		a, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 is not usable here: %v", err)
		}
		port := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			return a, b
		}
		a.Close()
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, nil
}

func TestMXDeliveryInPreferenceOrder(t *testing.T) {
	t.Parallel()
	// mx1 (preference 10) is 127.0.0.2 and refuses service at the
	// greeting; mx2 (preference 20) is 127.0.0.1 and takes the message;
	// mx3 (preference 5) has no address at all.
	l2, l1 := listenPair(t)
	greetings := make(chan struct{}, 10)
	rawServer(t, l2, func(c net.Conn) {
		greetings <- struct{}{}
		_, _ = c.Write([]byte("421 4.3.2 mx1 is busy\r\n"))
	})
	m := serveMTA(t, l1, nil)
	port := l1.Addr().(*net.TCPAddr).Port
	zone := map[string][]dns.RR{
		"example.test.": {
			rr(t, "example.test. 60 IN MX 20 mx2.example.test."),
			rr(t, "example.test. 60 IN MX 10 mx1.example.test."),
			rr(t, "example.test. 60 IN MX 5 mx3.example.test."),
		},
		"mx1.example.test.": {rr(t, "mx1.example.test. 60 IN A 127.0.0.2")},
		"mx2.example.test.": {rr(t, "mx2.example.test. 60 IN A 127.0.0.1")},
	}
	c, logs := newCourier(t, Config{TLS: TLSNone, DNSServer: dnsServer(t, zone, nil), MXPort: port})
	res := deliver(t, c, Route{NextHop: "mx", Domain: "example.test"}, newMessage("M1", "a@example.org", testBody, "u@example.test"))
	wantStatus(t, res, Delivered)
	if res[0].HostName != "mx2.example.test" || res[0].Host != l1.Addr().String() {
		t.Errorf("delivered via %s (%s)", res[0].HostName, res[0].Host)
	}
	if len(greetings) != 1 {
		t.Errorf("mx1 was tried %d times, want 1 (before mx2)", len(greetings))
	}
	if len(m.received()) != 1 {
		t.Error("mx2 did not get the message")
	}
	if !strings.Contains(logs.String(), "mx1 is busy") || !strings.Contains(logs.String(), `"outcome":"next host"`) {
		t.Errorf("the skipped MX is not logged:\n%s", logs)
	}
}

func TestMXOutcomes(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	_, portStr, _ := net.SplitHostPort(m.addr)
	port, _ := strconv.Atoi(portStr)
	zone := map[string][]dns.RR{
		// No MX records: the A record is the implicit MX (RFC 5321 5.1).
		"implicit.test.": {rr(t, "implicit.test. 60 IN A 127.0.0.1")},
		// RFC 7505 null MX.
		"nullmx.test.": {rr(t, "nullmx.test. 60 IN MX 0 .")},
		// MX hosts that do not exist.
		"dangling.test.": {rr(t, "dangling.test. 60 IN MX 10 nowhere.dangling.test.")},
	}
	servfail := map[string]bool{"broken.test.": true}
	c, _ := newCourier(t, Config{TLS: TLSNone, DNSServer: dnsServer(t, zone, servfail), MXPort: port})
	for _, tc := range []struct {
		domain   string
		status   Status
		enhanced string
	}{
		{"implicit.test", Delivered, "2.0.0"},
		{"nxdomain.test", Failed, "5.1.2"},
		{"nullmx.test", Failed, "5.1.10"},
		{"broken.test", Deferred, "4.4.3"},
		{"dangling.test", Deferred, "4.4.4"},
	} {
		res := deliver(t, c, Route{NextHop: "mx", Domain: tc.domain}, newMessage("M2", "a@example.org", testBody, "u@"+tc.domain))
		if res[0].Status != tc.status || res[0].Enhanced.String() != tc.enhanced {
			t.Errorf("%s: %v %s %q, want %v %s", tc.domain, res[0].Status, res[0].Enhanced.String(), res[0].Diagnostic(), tc.status, tc.enhanced)
		}
	}
	if n := len(m.received()); n != 1 {
		t.Errorf("server received %d messages, want 1 (implicit MX)", n)
	}
}

func TestAllMXHostsDownIsDeferred(t *testing.T) {
	t.Parallel()
	port := freePort(t) // nobody listens there
	zone := map[string][]dns.RR{
		"down.test.":    {rr(t, "down.test. 60 IN MX 10 mx.down.test.")},
		"mx.down.test.": {rr(t, "mx.down.test. 60 IN A 127.0.0.1")},
	}
	c, _ := newCourier(t, Config{TLS: TLSNone, DNSServer: dnsServer(t, zone, nil), MXPort: port})
	res := deliver(t, c, Route{NextHop: "mx", Domain: "down.test"}, newMessage("M3", "a@example.org", testBody, "u@down.test"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.4.1" || !strings.Contains(res[0].Diagnostic(), "connection refused") {
		t.Errorf("%+v", res[0])
	}
}

// An MX answer is the destination's to make, and may list many hosts:
// the courier looks up the addresses of at most maxMXHostLookups of them,
// and none once it has MaxMXAddresses addresses, so that a domain cannot
// have it make hundreds of (slow) DNS queries per attempt.
func TestMXHostLookupsAreBounded(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	_, portStr, _ := net.SplitHostPort(m.addr)
	port, _ := strconv.Atoi(portStr)
	zone := map[string][]dns.RR{}
	for i := 0; i < 30; i++ {
		// many.test: thirty MX hosts, none of which exists.
		zone["many.test."] = append(zone["many.test."], rr(t, fmt.Sprintf("many.test. 60 IN MX %d mx%d.many.test.", 10+i, i)))
		// wide.test: thirty MX hosts, each with an address.
		host := fmt.Sprintf("mx%d.wide.test.", i)
		zone["wide.test."] = append(zone["wide.test."], rr(t, fmt.Sprintf("wide.test. 60 IN MX %d %s", 10+i, host)))
		zone[host] = []dns.RR{rr(t, host+" 60 IN A 127.0.0.1")}
	}
	for _, tc := range []struct {
		domain     string
		status     Status
		maxQueries int32 // the MX question, then A and AAAA per host
	}{
		{"many.test", Deferred, 1 + 2*maxMXHostLookups},
		{"wide.test", Delivered, 1 + 2*5},
	} {
		var queries atomic.Int32
		c, _ := newCourier(t, Config{TLS: TLSNone, DNSServer: countingDNSServer(t, zone, nil, &queries), MXPort: port, MaxMXAddresses: 5})
		res := deliver(t, c, Route{NextHop: "mx", Domain: tc.domain}, newMessage("MX9", "a@example.org", testBody, "u@"+tc.domain))
		wantStatus(t, res, tc.status)
		if n := queries.Load(); n > tc.maxQueries {
			t.Errorf("%s: %d DNS questions for one attempt, want at most %d", tc.domain, n, tc.maxQueries)
		}
	}
}
