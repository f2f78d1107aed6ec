package postfixtest

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"smimegate/internal/config"
)

// The recipes in docs/postfix.md are run here as written, with two changes
// a throwaway instance needs: every port becomes a free loopback port, and
// chroot is off (a chroot jail needs files copied into the queue directory).
// A second Postfix, relaying everything, stands in for smimegate; the
// end-to-end test with smimegate itself uses the same recipe.

const recipeDoc = "../../docs/postfix.md"

// recipeSection returns the part of docs/postfix.md from the heading that
// starts with title to the next heading of the same level.
func recipeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile(recipeDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n## "+title)
	if i < 0 {
		t.Fatalf("%s has no section %q", recipeDoc, title)
	}
	sec := doc[i+1:]
	if j := strings.Index(sec[3:], "\n## "); j >= 0 {
		sec = sec[:j+3]
	}
	return sec
}

// codeBlock returns the first fenced block after the heading in sec.
func codeBlock(t *testing.T, sec, heading string) string {
	t.Helper()
	i := strings.Index(sec, "\n"+heading)
	if i < 0 {
		t.Fatalf("recipe section has no heading %q", heading)
	}
	rest := sec[i:]
	start := strings.Index(rest, "```")
	if start < 0 {
		t.Fatalf("no code block after %q", heading)
	}
	rest = rest[start:]
	nl := strings.IndexByte(rest, '\n')
	end := strings.Index(rest[nl:], "\n```")
	if nl < 0 || end < 0 {
		t.Fatalf("unterminated code block after %q", heading)
	}
	return rest[nl+1 : nl+end+1]
}

// mainCF reads "name = value" lines, skipping comments.
func mainCF(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("main.cf line %q has no =", line)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// chrootOff sets the chroot column (the fifth) of every master.cf entry to
// n, and gives the stock "smtp inet" service the harness's main port.
func chrootOff(text string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			f := strings.Fields(line)
			if len(f) >= 8 {
				f[4] = "n"
				if f[0] == "smtp" && f[1] == "inet" {
					f[0] = `127.0.0.1:{{port "smtpd"}}`
				}
				line = strings.Join(f, " ")
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// checkTOML parses a smimegate.toml block with the real configuration code.
func checkTOML(t *testing.T, sec string) {
	t.Helper()
	src := codeBlock(t, sec, "### smimegate.toml")
	if _, err := config.Parse("docs/postfix.md", []byte(src)); err != nil {
		t.Errorf("the smimegate.toml of the recipe does not validate: %v\n%s", err, src)
	}
}

// TestContentFilterRecipe runs section 1 of docs/postfix.md: mail enters
// the recipe's Postfix, goes through the smimegate transport to the stand-in
// gateway, comes back on the re-injection port and leaves for the Internet
// (a smtp-sink), once through each stage.
func TestContentFilterRecipe(t *testing.T) {
	t.Parallel()
	sec := recipeSection(t, "1. After-queue content filter")
	checkTOML(t, sec)
	main := mainCF(t, codeBlock(t, sec, "### main.cf"))
	master := codeBlock(t, sec, "### master.cf")
	if !strings.Contains(main["content_filter"], "[127.0.0.1]:2525") || !strings.Contains(master, "127.0.0.1:10026 inet") {
		t.Fatalf("the recipe no longer uses ports 2525 and 10026; update this test: %v\n%s", main, master)
	}
	master = strings.ReplaceAll(chrootOff(master), "127.0.0.1:10026", `127.0.0.1:{{port "reinject"}}`)

	internet := StartSink(t, SinkOptions{})
	// The stand-in for smimegate relays everything back to the recipe's
	// re-injection port, which is known only once the recipe runs.
	gateway := Start(t, Options{})
	main["content_filter"] = strings.ReplaceAll(main["content_filter"], "[127.0.0.1]:2525", "[127.0.0.1]:"+strconv.Itoa(gateway.Port))
	main["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(internet.Port)
	pf := Start(t, Options{MainCF: main, MasterCF: master})
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
	sec := recipeSection(t, "1. After-queue content filter")
	main := mainCF(t, codeBlock(t, sec, "### main.cf"))
	master := strings.ReplaceAll(chrootOff(codeBlock(t, sec, "### master.cf")), "127.0.0.1:10026", `127.0.0.1:{{port "reinject"}}`)
	internet := StartSink(t, SinkOptions{})
	down, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	main["content_filter"] = strings.ReplaceAll(main["content_filter"], "[127.0.0.1]:2525", "[127.0.0.1]:"+strconv.Itoa(down))
	main["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(internet.Port)
	pf := Start(t, Options{MainCF: main, MasterCF: master})

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
	sec := recipeSection(t, "2. relayhost")
	checkTOML(t, sec)
	main := mainCF(t, codeBlock(t, sec, "### main.cf"))
	transport := codeBlock(t, sec, "### /etc/postfix/transport")
	if main["relayhost"] != "[127.0.0.1]:2525" || !strings.HasPrefix(main["transport_maps"], "hash:") {
		t.Fatalf("the recipe changed; update this test: %v", main)
	}
	outbound := StartSink(t, SinkOptions{})
	inbound := StartSink(t, SinkOptions{})
	main["relayhost"] = "[127.0.0.1]:" + strconv.Itoa(outbound.Port)
	// inline: is the transport file's table without postmap.
	var entries []string
	for line := range strings.SplitSeq(transport, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		entries = append(entries, f[0]+"="+strings.ReplaceAll(f[1], "[127.0.0.1]:2525", "[127.0.0.1]:"+strconv.Itoa(inbound.Port)))
	}
	if len(entries) == 0 {
		t.Fatalf("no entries in the transport block:\n%s", transport)
	}
	main["transport_maps"] = "inline:{ " + strings.Join(entries, ", ") + " }"
	pf := Start(t, Options{MainCF: main})

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
