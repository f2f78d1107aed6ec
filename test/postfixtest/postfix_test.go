package postfixtest

import (
	"bytes"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deliveryTimeout bounds a message's way through one or two Postfix
// instances on a loaded machine; it normally takes well under a second.
const deliveryTimeout = 60 * time.Second

// runTool runs one of the installed mail tools and fails t with its output
// if it fails.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin, err := command(name)
	if err != nil {
		if p, err2 := exec.LookPath(name); err2 == nil {
			bin = p
		} else {
			unavailable(t, "%v", err)
		}
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// receivedBy counts the Received fields that name host as the receiver.
func receivedBy(msg []byte, host string) int {
	return bytes.Count(msg, []byte("by "+host+" (Postfix)"))
}

// TestRelayToSink: a message sent with swaks to a Postfix instance whose
// relayhost is smtp-sink arrives there intact, having passed through that
// instance.
func TestRelayToSink(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	pf := Start(t, Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(sink.Port)}})

	body := "postfixtest relay " + pf.Hostname
	runTool(t, "swaks", "--server", pf.Addr, "--from", "alice@example.org", "--to", "bob@example.net",
		"--header", "Subject: harness check", "--body", body)

	pf.WaitLog(t, regexp.MustCompile(`to=<bob@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+strconv.Itoa(sink.Port)+`,.* status=sent`), deliveryTimeout)
	msgs := sink.WaitMessages(t, 1, deliveryTimeout)
	if len(msgs) != 1 {
		t.Fatalf("sink holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{"X-Mail-Args: <alice@example.org>", "X-Rcpt-Args: <bob@example.net>", "Subject: harness check", body} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("message at the sink lacks %q:\n%s", want, m)
		}
	}
	if n := receivedBy(m, pf.Hostname); n != 1 {
		t.Errorf("message passed %s %d times, want once:\n%s", pf.Hostname, n, m)
	}
	msg := Body(m)
	if !bytes.HasPrefix(msg, []byte("Received: from ")) || !bytes.Contains(msg, []byte(body)) {
		t.Errorf("Body did not strip smtp-sink's own lines:\n%s", msg)
	}
	if q, err := pf.Queue(); err != nil || !strings.Contains(q, "Mail queue is empty") {
		t.Errorf("queue after delivery: %q, %v", q, err)
	}
}

// TestTwoInstancesAtOnce: two instances run side by side, the first
// relaying to the second and the second to smtp-sink, each with its own
// ports, queue and log; smtp-source's messages all arrive through both.
func TestTwoInstancesAtOnce(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	second := Start(t, Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(sink.Port)}})
	first := Start(t, Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(second.Port)}})
	if first.Port == second.Port || first.Dir == second.Dir || first.Hostname == second.Hostname {
		t.Fatalf("instances share a port, directory or name: %+v %+v", first, second)
	}

	const n = 10
	runTool(t, "smtp-source", "-c", "-m", strconv.Itoa(n), "-s", "2", "-f", "alice@example.org",
		"-t", "bob@example.net", "-S", "two instances", first.Addr)

	msgs := sink.WaitMessages(t, n, deliveryTimeout)
	if len(msgs) != n {
		t.Fatalf("sink holds %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if receivedBy(m, first.Hostname) != 1 || receivedBy(m, second.Hostname) != 1 {
			t.Errorf("message %d did not pass both instances once:\n%s", i, m)
		}
	}
	// Each instance logged its own part, and only its own.
	sentTo := func(port int) *regexp.Regexp {
		return regexp.MustCompile(`relay=127\.0\.0\.1\[127\.0\.0\.1\]:` + strconv.Itoa(port) + `,.* status=sent`)
	}
	first.WaitLog(t, sentTo(second.Port), deliveryTimeout)
	second.WaitLog(t, sentTo(sink.Port), deliveryTimeout)
	for _, in := range []*Instance{first, second} {
		short, _, _ := strings.Cut(in.Hostname, ".")
		for line := range strings.SplitSeq(strings.TrimSpace(in.Log()), "\n") {
			// "Nov 28 10:38:13 HOST postfix/...": the host is the first
			// label of the myhostname of the instance that wrote it.
			if f := strings.Fields(line); len(f) < 4 || f[3] != short {
				t.Errorf("%s has a line that is not its own: %q", in.MailLog, line)
			}
		}
	}
}

// TestContentFilterShape: master.cf overrides build the after-queue content
// filter topology of docs/postfix.md, with Postfix's own smtp client in
// place of smimegate: the main smtpd hands mail to the filter, which
// re-injects it on a second smtpd with content_filter= (loop avoidance),
// from where it leaves for the relayhost. Without the empty content_filter
// on the re-injection port the message would loop until Postfix bounces it.
func TestContentFilterShape(t *testing.T) {
	t.Parallel()
	sink := StartSink(t, SinkOptions{})
	pf := Start(t, Options{
		MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(sink.Port)},
		MasterCF: `
127.0.0.1:{{port "smtpd"}} inet n - n - - smtpd
  -o content_filter=filter:[127.0.0.1]:{{port "reinject"}}
filter    unix  -       -       n       -       4       smtp
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
127.0.0.1:{{port "reinject"}} inet n - n - - smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters,no_address_mappings
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
`,
	})
	reinject, ok := pf.Ports["reinject"]
	if !ok || reinject == pf.Port {
		t.Fatalf("ports %v: no separate re-injection port", pf.Ports)
	}
	runTool(t, "smtp-source", "-c", "-m", "3", "-f", "alice@example.org", "-t", "bob@example.net", pf.Addr)

	msgs := sink.WaitMessages(t, 3, deliveryTimeout)
	for i, m := range msgs {
		// Once on the main port, once on the re-injection port.
		if n := receivedBy(m, pf.Hostname); n != 2 {
			t.Errorf("message %d passed Postfix %d times, want 2 (main smtpd, then re-injection):\n%s", i, n, m)
		}
	}
	// The filter transport handed the message to the re-injection smtpd,
	// which queued it anew.
	pf.WaitLog(t, regexp.MustCompile(`relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+strconv.Itoa(reinject)+`,.* status=sent \(250 2\.0\.0 Ok: queued as `), deliveryTimeout)
}

// TestStartFailureCarriesLog: a configuration Postfix refuses makes start
// fail with Postfix's own complaint from the maillog, and leaves nothing
// running.
func TestStartFailureCarriesLog(t *testing.T) {
	t.Parallel()
	require(t)
	in, err := start(Options{MasterCF: `127.0.0.1:{{port "x"}} nonsense n - n - - smtpd`})
	if err == nil {
		in.Stop()
		t.Fatal("start accepted a master.cf service of type nonsense")
	}
	if !strings.Contains(err.Error(), "nonsense") || !strings.Contains(err.Error(), "maillog:") {
		t.Errorf("error does not carry Postfix's complaint: %v", err)
	}
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	require(t)
	_, err := start(Options{MasterCF: `{{port "x"`})
	if err == nil || !strings.Contains(err.Error(), "template master.cf") {
		t.Errorf("bad template: %v", err)
	}
	_, err = start(Options{MainCF: map[string]string{"bad name": "x"}})
	if err == nil || !strings.Contains(err.Error(), `"bad name"`) {
		t.Errorf("bad parameter name: %v", err)
	}
}

func TestMergeMasterCF(t *testing.T) {
	t.Parallel()
	base := "smtp inet n - n - - smtpd\n  -o a=b\n# comment\ncleanup unix n - n - 0 cleanup\nsmtp unix - - n - - smtp\n"
	extra := "\nsmtp inet n - n - - smtpd\n\t-o content_filter=x\nfilter unix - - n - 4 smtp\n"
	got := mergeMasterCF(base, extra)
	want := "cleanup unix n - n - 0 cleanup\nsmtp unix - - n - - smtp\nsmtp inet n - n - - smtpd\n\t-o content_filter=x\nfilter unix - - n - 4 smtp\n"
	if got != want {
		t.Errorf("merge:\n%s\nwant:\n%s", got, want)
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{"3.7.11": true, "3.4": true, "4.0.1": true, "3.3.2": false, "2.11.3": false, "x": false, "3": false} {
		if err := checkVersion(v); (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestBody(t *testing.T) {
	t.Parallel()
	dump := "X-Client-Addr: 127.0.0.1\nX-Rcpt-Args: <b@example.net>\nReceived: from x\n\tby smtp-sink (smtp-sink) with ESMTP id 1;\n\tSat, 28 Nov 2026 10:38:13 +0000 (UTC)\nSubject: hi\n\nbody\n"
	if got := string(Body([]byte(dump))); got != "Subject: hi\n\nbody\n" {
		t.Errorf("Body = %q", got)
	}
	if got := string(Body([]byte("Subject: plain\n"))); got != "Subject: plain\n" {
		t.Errorf("Body without dump lines = %q", got)
	}
}
