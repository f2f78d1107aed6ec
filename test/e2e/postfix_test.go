package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"smimegate/test/postfixtest"
)

// TestPostfixContentFilterRecipe runs docs/postfix.md's after-queue content
// filter recipe as written: a real Postfix hands every message to a real
// smimegate, which re-injects into Postfix's second smtpd; Postfix then
// relays to "the Internet" (a sink). Mail to a partner leaves sealed, other
// mail leaves unaltered, and nothing loops.
func TestPostfixContentFilterRecipe(t *testing.T) {
	t.Parallel()
	internet := startSink(t)
	gwAddr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(gwAddr)
	gwPort, _ := strconv.Atoi(portStr)

	opts, err := postfixtest.MustReadRecipe(t, "../../docs/postfix.md", postfixtest.ContentFilterSection).ContentFilter(gwPort)
	if err != nil {
		t.Fatal(err)
	}
	opts.MainCF["relayhost"] = "[" + strings.Replace(internet.Addr, ":", "]:", 1)
	pf := postfixtest.Start(t, opts)
	reinject := fmt.Sprintf("127.0.0.1:%d", pf.Ports["reinject"])

	gw := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"},
		outbound: reinject, inbound: reinject, listen: gwAddr, trusted: `["127.0.0.1/32"]`})

	swaks := func(to, subject string) {
		out, err := exec.Command("swaks", "--server", pf.Addr, "--from", "alice@example.org", "--to", to,
			"--header", "Subject: "+subject, "--body", secretLine).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s", to, err, out)
		}
	}
	swaks("bob@example.net", "to the partner")
	swaks("carol@plain.test", "to a plain domain")

	msgs := waitMessages(t, internet, 2)
	var sealed, plain int
	for _, m := range msgs {
		switch m.To[0] {
		case "bob@example.net":
			sealed++
			if bytes.Contains(m.Data, []byte(secretLine)) {
				t.Error("mail to the partner left Postfix readable")
			}
			if _, err := opensslDecrypt(t, m.Data, "example.net"); err != nil {
				t.Errorf("the partner cannot open it: %v", err)
			}
		case "carol@plain.test":
			plain++
			if !bytes.Contains(m.Data, []byte(secretLine)) {
				t.Error("mail to the plain domain was altered")
			}
		}
	}
	if sealed != 1 || plain != 1 {
		t.Errorf("got %d sealed and %d plain messages, want one each", sealed, plain)
	}
	if internet.Count() != 2 {
		t.Errorf("%d messages reached the Internet: a loop or a duplicate", internet.Count())
	}
	checkChunking(t, gw, pf)
	if t.Failed() {
		t.Logf("postfix log:\n%s", pf.Log())
	}
}

// checkChunking: with CHUNKING offered on both sides, each hop of the
// recipe used what its client implements. smimegate's courier hands the
// messages back to Postfix's reinjection smtpd with BDAT, which Postfix's
// smtpd counts in its disconnect line ("bdat=1"); Postfix's smtp client
// delivers into smimegate with DATA, which smimegate's transaction line
// names: Postfix implements BDAT in its server only (since 3.4), its
// client never sends it, whatever the server offers.
func checkChunking(t *testing.T, gw *gateway, pf *postfixtest.Instance) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(pf.Log(), " bdat=") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(pf.Log(), " bdat=") {
		t.Errorf("smimegate's courier did not hand the messages back to Postfix with BDAT")
	}
	if n := strings.Count(gw.log.String(), "smtpd: message accepted"); n != 2 || strings.Count(gw.log.String(), "verb=DATA") != 2 {
		t.Errorf("smimegate accepted %d messages from Postfix, want 2, each by DATA:\n%s", n, gw.log.String())
	}
}
