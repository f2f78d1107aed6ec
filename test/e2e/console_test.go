package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"smimegate/internal/mailsink"
)

// updateScreenshots writes the console's screenshots into docs/console
// (go test ./test/e2e -run TestConsoleInBrowser -update-screenshots);
// without it they go to a temporary directory, taken all the same.
var updateScreenshots = flag.Bool("update-screenshots", false, "write the console screenshots into docs/console")

// browser starts Debian's chromium headless for one test, with a fresh
// profile and nothing that reaches the network on its own. Without chromium
// the test is skipped, except under CI (.ci/run installs it).
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (apt-get install chromium), and CI needs the browser test")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
	)
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root, which CI is.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first call starts the browser for the life of ctx; the test's
	// steps then run under a deadline derived from it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// screenshotDir is where TestConsoleInBrowser writes its screenshots.
func screenshotDir(t *testing.T) string {
	if *updateScreenshots {
		dir := filepath.Join("..", "..", "docs", "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// consoleGateway starts example.net's gateway with a queued message (to a
// partner whose next hop answers 421), two quarantined ones (tampered
// ciphertext, and 3DES, which policy refuses until the operator allows
// it), certificates of its own and of two partners, and partner policies.
func consoleGateway(t *testing.T) (g *gateway, bob *mailsink.Sink, queued, tampered, legacy string) {
	t.Helper()
	transit, bobSink := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 5}, Message: "partner's server busy"})
	g = startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org", "secure.test"},
		outbound: transit.Addr, inbound: bobSink.Addr,
		extra: "[queue]\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n\n" +
			"[policy.partners.\"example.org\"]\nrequire = true\nrsa_padding = \"oaep\"\n\n" +
			"[policy.partners.\"secure.test\"]\ncipher = \"aes128-gcm\"\nrequire = true\nrequire_signature = true\n\n" +
			"[policy.partners.\"legacy.example\"]\nrequire = true\ncipher = \"aes256-cbc\"\n"})

	// Partner certificates that end soon, to be coloured.
	for domain, days := range map[string]string{"soon.example": "20", "urgent.example": "5"} {
		dir := t.TempDir()
		if out, err := exec.Command(bin, "keygen", "-domain", domain, "-key", "p256", "-days", days, "-out", dir).CombinedOutput(); err != nil {
			t.Fatalf("keygen %s: %v\n%s", domain, err, out)
		}
		copyFile(t, filepath.Join(dir, domain+".crt"), filepath.Join(g.dir, "partners", domain+".crt"))
	}
	g.hupCerts(2)

	mustSend(t, g.smtp, "bob@example.net", []string{"carol@example.org"}, message("bob@example.net", "carol@example.org", "quarterly figures"))
	sealed := opensslEncrypt(t, []byte(message("carol@example.org", "bob@example.net", "tampered")), "example.net", "-aes-256-gcm")
	mustSend(t, g.smtp, "carol@example.org", []string{"bob@example.net"}, string(tamper(sealed)))
	mustSend(t, g.smtp, "dave@legacy.example", []string{"bob@example.net"},
		string(opensslEncrypt(t, []byte(message("dave@legacy.example", "bob@example.net", "legacy 3des")), "example.net", "-des3")))

	g.waitRecipient("carol@example.org", "pending", "partner's server busy")
	q := g.mustRun("queue", "list")
	queued = firstField(t, q, "carol@example.org")
	g.waitQuarantined(2)
	out := g.mustRun("quarantine", "list")
	tampered = firstField(t, out, "carol@example.org")
	legacy = firstField(t, out, "dave@legacy.example")
	return g, bobSink, queued, tampered, legacy
}

func firstField(t *testing.T, out, containing string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, containing) {
			return strings.Fields(line)[0]
		}
	}
	t.Fatalf("no line with %q in:\n%s", containing, out)
	return ""
}

// loginURL runs `smimegate admin url` as the operator does.
func loginURL(t *testing.T, g *gateway) string {
	t.Helper()
	out, err := exec.Command(bin, "admin", "url", "-config", g.cfgPath).Output()
	if err != nil {
		t.Fatalf("admin url: %v", err)
	}
	u := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/login\?t=[A-Za-z0-9_-]{43}$`).MatchString(u) {
		t.Fatalf("admin url printed %q", u)
	}
	return u
}

// TestConsoleInBrowser: in a real browser, the operator logs in with the
// link of `smimegate admin url`, sees the queued and the quarantined
// messages and the certificates, releases a quarantined message after
// allowing 3DES (it is delivered and leaves the quarantine), and every page
// is screenshot. A page of another origin, open in the same logged-in
// browser, cannot delete or release anything; a browser without the login
// sees nothing of the queue; the login link works once.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	g, bob, queued, tampered, legacy := consoleGateway(t)
	shots := screenshotDir(t)
	ctx := browser(t, 1280, 860)
	base := "http://" + g.admin
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(url, sel string) string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s %s: %v", url, sel, err)
		}
		return s
	}

	// Log in: the link sets the session and lands on the overview.
	login := loginURL(t, g)
	if err := chromedp.Do(ctx, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS("table.counters"))); err != nil {
		t.Fatalf("login: %v", err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	location, _ := chromedp.Run(ctx, chromedp.Location())
	if location != base+"/console/" || !strings.HasPrefix(title, "Overview") {
		t.Fatalf("after the login link: %s, %q", location, title)
	}
	if s := text(base+"/console/", "#counter-accepted td.n"); strings.Fields(s)[0] != "3" {
		t.Errorf("the overview's accepted counter: %q, want 3 messages", s)
	}
	shoot("overview")

	if s := text(base+"/console/queue", "#queue"); !strings.Contains(s, queued) || !strings.Contains(s, "carol@example.org") || !strings.Contains(s, "partner's server busy") {
		t.Errorf("the queue page lacks the queued message:\n%s", s)
	}
	shoot("queue")
	if s := text(base+"/console/quarantine", "#quarantine"); !strings.Contains(s, tampered) || !strings.Contains(s, legacy) {
		t.Errorf("the quarantine page lacks the quarantined messages:\n%s", s)
	}
	shoot("quarantine")
	if s := text(base+"/console/quarantine/"+legacy, "main"); !strings.Contains(s, "dave@legacy.example") || !strings.Contains(strings.ToLower(s), "3des") && !strings.Contains(s, "1.2.840.113549.3.7") {
		t.Errorf("the quarantined message's page:\n%s", s)
	}
	shoot("message")
	fp := certFingerprint(t, "example.net")
	if s := text(base+"/console/certificates", "#certificates"); !strings.Contains(s, fp) || !strings.Contains(s, "secure.test") {
		t.Errorf("the certificates page lacks example.net's certificate %s:\n%s", fp, s)
	}
	for domain, class := range map[string]string{"soon.example": "soon", "urgent.example": "urgent", "example.org": "ok"} {
		c, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#certificates tbody tr")].filter(r => r.cells[1].textContent.includes("`+domain+`")).map(r => r.cells[3].className).join()`))
		if err != nil || c != "n days "+class {
			t.Errorf("%s's days left are coloured %q, want %q (%v)", domain, c, class, err)
		}
	}
	shoot("certificates")
	if s := text(base+"/console/partners", "#partners"); !strings.Contains(s, "legacy.example") || !strings.Contains(s, "none usable") || !strings.Contains(s, "oaep") {
		t.Errorf("the partners page:\n%s", s)
	}
	shoot("partners")
	if s := text(base+"/console/decisions", "#decisions"); !strings.Contains(s, "quarantine") || !strings.Contains(s, "encrypt") {
		t.Errorf("the decisions page:\n%s", s)
	}
	shoot("decisions")

	// A page of another origin, in the same browser with the session:
	// a form posted at the API, a JSON fetch, a no-cors fetch. Nothing
	// may change.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>cat pictures</title>
<form id="f" method="post" action="%[1]s/quarantine/%[2]s/delete"></form>
<form id="g" method="post" action="%[1]s/queue/%[3]s/delete" enctype="text/plain"><input name='{"a":"' value='"}'></form>
<iframe name="sink" id="sink"></iframe>
<script>
const tries = [
  fetch("%[1]s/quarantine/%[4]s/release", {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"}, body: "{}"}).catch(e => "cors: " + e),
  fetch("%[1]s/queue/%[3]s/delete", {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "application/json"}, body: "{}"}).catch(e => "no-cors: " + e),
  fetch("%[1]s/queue", {credentials: "include"}).then(r => r.text()).catch(e => "read: " + e),
];
Promise.allSettled(tries).then(() => {
  document.getElementById("g").target = "sink"; document.getElementById("g").submit();
  setTimeout(() => { document.title = "tried"; document.getElementById("f").submit(); }, 300);
});
</script>`, base, tampered, queued, legacy)
	}))
	t.Cleanup(attacker.Close)
	refusedBefore := metricValue(t, g, `smimegate_admin_requests_refused_total{reason="cross_origin"}`)
	if err := chromedp.Do(ctx, chromedp.Navigate(attacker.URL)); err != nil {
		t.Fatalf("the attacker's page: %v", err)
	}
	g.waitFor("the attacker's requests never reached the guard", func() (bool, error) {
		return metricValue(t, g, `smimegate_admin_requests_refused_total{reason="cross_origin"}`) >= refusedBefore+3, nil
	})
	if out, _ := g.run("quarantine", "list"); !strings.Contains(out, tampered) || !strings.Contains(out, legacy) {
		t.Fatalf("a page of another origin changed the quarantine:\n%s", out)
	}
	if out, _ := g.run("queue", "list"); !strings.Contains(out, queued) {
		t.Fatalf("a page of another origin changed the queue:\n%s", out)
	}

	// Release: the operator allows 3DES, then releases the legacy message
	// from its confirmation page; it is delivered and leaves the quarantine.
	cfg, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.cfgPath, bytes.Replace(cfg, []byte("[admin]"), []byte("[policy]\nallow_3des = true\n\n[admin]"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	g.hupConfig()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/quarantine/"+legacy),
		chromedp.Click(chromedp.CSS(`a[href="/console/confirm/quarantine/release/`+legacy+`"]`)),
		chromedp.WaitEnabled(chromedp.ID("confirm"))); err != nil {
		t.Fatalf("the release confirmation: %v", err)
	}
	question, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".question")))
	if !strings.Contains(question, "Release") {
		t.Errorf("the confirmation asks %q", question)
	}
	shoot("confirm")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.CSS(".done"))); err != nil {
		t.Fatalf("releasing: %v", err)
	}
	done, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".done")))
	location, _ = chromedp.Run(ctx, chromedp.Location())
	if !strings.Contains(done, legacy) || !strings.HasPrefix(location, base+"/console/quarantine") {
		t.Errorf("after the release: %s, %q", location, done)
	}
	gone, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("x-`+legacy+`") === null && document.getElementById("x-`+tampered+`") !== null`))
	if err != nil || !gone {
		t.Errorf("the quarantine page after the release still lists %s (or lost %s): %v", legacy, tampered, err)
	}
	waitMessages(t, bob, 1) // the released message
	if out, _ := g.run("quarantine", "list"); strings.Contains(out, legacy) || !strings.Contains(out, "1 message(s)") {
		t.Errorf("after the release the quarantine holds:\n%s", out)
	}

	// A phone-sized screen: the queue page is readable.
	phone := browser(t, 390, 844)
	if err := chromedp.Do(phone, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)), chromedp.Navigate(loginURL(t, g)), chromedp.WaitVisible(chromedp.CSS("table.counters")),
		chromedp.Navigate(base+"/console/queue"), chromedp.WaitVisible(chromedp.ID("queue"))); err != nil {
		t.Fatalf("phone: %v", err)
	}
	png, err := chromedp.Run(phone, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shots, "queue-phone.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleWithoutLogin: a browser that has not logged in sees nothing of
// the queue, the quarantine or the certificates, and a login link works
// only once.
func TestConsoleWithoutLogin(t *testing.T) {
	t.Parallel()
	g, _, queued, tampered, _ := consoleGateway(t)
	login := loginURL(t, g)
	first := browser(t, 1024, 768)
	if err := chromedp.Do(first, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS("table.counters"))); err != nil {
		t.Fatalf("login: %v", err)
	}
	ctx := browser(t, 1024, 768)
	base := "http://" + g.admin
	for _, p := range []string{"/console/", "/console/queue", "/console/quarantine", "/console/quarantine/" + tampered, "/console/certificates", "/queue", "/quarantine/" + tampered, login[len(base):]} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+p), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		body, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, secret := range []string{queued, tampered, "carol@example.org", certFingerprint(t, "example.net")} {
			if strings.Contains(body, secret) {
				t.Errorf("%s without a login shows %q", p, secret)
			}
		}
		if !strings.Contains(body, "smimegate admin url") {
			t.Errorf("%s without a login does not say how to log in:\n%s", p, body)
		}
	}
}

// metricValue reads one sample of the gateway's /metrics, 0 if absent.
func metricValue(t *testing.T, g *gateway, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, "http://"+g.admin+"/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// certFingerprint is the SHA-256 fingerprint `openssl x509` gives of the
// test certificate of domain, in the store's lower-case hex.
func certFingerprint(t *testing.T, domain string) string {
	t.Helper()
	crt, _ := keyFiles(domain)
	out, err := exec.Command("openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256").Output()
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint: %v", err)
	}
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}
