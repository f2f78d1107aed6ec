package postfixtest

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"smimegate/internal/config"
)

// The recipes of docs/postfix.md, run as written. A second Postfix,
// relaying everything, or smtp-sink stands in for smimegate here; the
// end-to-end test with smimegate itself uses the same recipes.

const recipeDoc = "../../docs/postfix.md"

// checkTOML parses a recipe's smimegate.toml with the real configuration
// code.
func checkTOML(t *testing.T, r *Recipe) {
	t.Helper()
	if _, err := config.Parse("docs/postfix.md", []byte(r.TOML)); err != nil {
		t.Errorf("the smimegate.toml of the recipe does not validate: %v\n%s", err, r.TOML)
	}
}

func TestReadRecipe(t *testing.T) {
	t.Parallel()
	cf := MustReadRecipe(t, recipeDoc, ContentFilterSection)
	if cf.MainCF["receive_override_options"] != "no_address_mappings" || !strings.Contains(cf.MasterCF, "-o content_filter=\n") || cf.Transport != "" {
		t.Errorf("content filter recipe read wrongly: %+v", cf)
	}
	rh := MustReadRecipe(t, recipeDoc, RelayhostSection)
	if rh.MasterCF != "" || !strings.Contains(rh.Transport, "example.org") || !strings.Contains(rh.TOML, `outbound = "mx"`) {
		t.Errorf("relayhost recipe read wrongly: %+v", rh)
	}
	opts, err := rh.Relayhost(4242)
	if err != nil || opts.MainCF["relayhost"] != "[127.0.0.1]:4242" ||
		opts.MainCF["transport_maps"] != "inline:{ example.org=smtp:[127.0.0.1]:4242, .example.org=smtp:[127.0.0.1]:4242 }" {
		t.Errorf("Relayhost(4242) = %+v, %v", opts, err)
	}
	if _, err := ReadRecipe(recipeDoc, "9. no such section"); err == nil {
		t.Error("ReadRecipe found a section that does not exist")
	}
}

// TestContentFilterRecipe runs section 1 of docs/postfix.md: mail enters
// the recipe's Postfix, goes through the smimegate transport to the stand-in
// gateway, comes back on the re-injection port and leaves for the Internet
// (a smtp-sink), once through each stage.
func TestContentFilterRecipe(t *testing.T) {
	t.Parallel()
	r := MustReadRecipe(t, recipeDoc, ContentFilterSection)
	checkTOML(t, r)
	internet := StartSink(t, SinkOptions{})
	// The stand-in for smimegate relays everything back to the recipe's
	// re-injection port, which is known only once the recipe runs.
	gateway := Start(t, Options{})
	opts, err := r.ContentFilter(gateway.Port)
	if err != nil {
		t.Fatal(err)
	}
	opts.MainCF["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(internet.Port)
	pf := Start(t, opts)
	gateway.Set(t, map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(pf.Ports["reinject"])})

	runTool(t, "swaks", "--server", pf.Addr, "--from", "alice@example.org", "--to", "bob@example.net",
		"--header", "Subject: content filter recipe", "--body", "through the gateway and back")

	msgs := internet.WaitMessages(t, 1, deliveryTimeout)
	m := msgs[0]
	if len(msgs) != 1 || receivedBy(m, pf.Hostname) != 2 || receivedBy(m, gateway.Hostname) != 1 {
		t.Fatalf("want one message that passed the recipe's Postfix twice and the gateway once; got %d:\n%s", len(msgs), m)
	}
	// The log names each stage as the recipe says: the smimegate
	// transport hands the message over, the re-injection smtpd takes it back.
	pf.WaitLog(t, regexp.MustCompile(`postfix/smimegate/smtp\[\d+\]: .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+strconv.Itoa(gateway.Port)+`,.* status=sent`), deliveryTimeout)
	pf.WaitLog(t, regexp.MustCompile(`postfix/reinject/smtpd\[\d+\]: .*client=`), deliveryTimeout)
	pf.WaitLog(t, regexp.MustCompile(`relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+strconv.Itoa(internet.Port)+`,.* status=sent`), deliveryTimeout)
}

// TestContentFilterRecipeDefersWhileGatewayDown: with the gateway not
// listening, the recipe keeps the message in Postfix's queue (deferred) and
// nothing reaches the Internet: the filter is the only way out.
func TestContentFilterRecipeDefersWhileGatewayDown(t *testing.T) {
	t.Parallel()
	internet := StartSink(t, SinkOptions{})
	down, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := MustReadRecipe(t, recipeDoc, ContentFilterSection).ContentFilter(down)
	if err != nil {
		t.Fatal(err)
	}
	opts.MainCF["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(internet.Port)
	pf := Start(t, opts)

	runTool(t, "swaks", "--server", pf.Addr, "--from", "alice@example.org", "--to", "bob@example.net", "--body", "must wait")
	pf.WaitLog(t, regexp.MustCompile(`postfix/smimegate/smtp\[\d+\]: .*to=<bob@example\.net>.*status=deferred`), deliveryTimeout)
	q, err := pf.Queue()
	if err != nil || !strings.Contains(q, "bob@example.net") {
		t.Errorf("message not in the queue while the gateway is down: %q, %v", q, err)
	}
	if msgs, _ := internet.Messages(); len(msgs) != 0 {
		t.Errorf("%d messages reached the Internet past a gateway that was down", len(msgs))
	}
}

// TestRelayhostRecipe runs section 2: outbound mail goes to the relayhost
// (smimegate), inbound mail for the relayed domain and its sub-domains goes
// there by the transport map. Two sinks stand in for smimegate so that the
// test sees which route each message took.
func TestRelayhostRecipe(t *testing.T) {
	t.Parallel()
	r := MustReadRecipe(t, recipeDoc, RelayhostSection)
	checkTOML(t, r)
	outbound := StartSink(t, SinkOptions{})
	inbound := StartSink(t, SinkOptions{})
	opts, err := r.Relayhost(inbound.Port)
	if err != nil {
		t.Fatal(err)
	}
	// Outbound mail goes to its own sink, so that the test sees which
	// route each message took.
	opts.MainCF["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(outbound.Port)
	pf := Start(t, opts)

	send := func(to string) {
		runTool(t, "swaks", "--server", pf.Addr, "--from", "someone@example.net", "--to", to, "--body", "for "+to)
	}
	send("carol@partner.example")
	send("bob@example.org")
	send("dave@sub.example.org")

	out := outbound.WaitMessages(t, 1, deliveryTimeout)
	in := inbound.WaitMessages(t, 2, deliveryTimeout)
	if len(out) != 1 || !bytes.Contains(out[0], []byte("X-Rcpt-Args: <carol@partner.example>")) {
		t.Errorf("outbound route got %d messages:\n%s", len(out), bytes.Join(out, []byte("\n----\n")))
	}
	var rcpts []string
	for _, m := range in {
		for _, r := range []string{"bob@example.org", "dave@sub.example.org"} {
			if bytes.Contains(m, []byte("X-Rcpt-Args: <"+r+">")) {
				rcpts = append(rcpts, r)
			}
		}
	}
	if got := fmt.Sprint(rcpts); len(in) != 2 || !strings.Contains(got, "bob@example.org") || !strings.Contains(got, "dave@sub.example.org") {
		t.Errorf("inbound route got %d messages for %v", len(in), rcpts)
	}
}
