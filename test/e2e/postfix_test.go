package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

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

	startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"},
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
	if t.Failed() {
		t.Logf("postfix log:\n%s", pf.Log())
	}
}
