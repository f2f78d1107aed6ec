package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/mailsink"
)

// demoMessage is what Alice sends to Bob.
const demoMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Lab results for patient 4711\r\n" +
	"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <demo-4711@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Dear Bob,\r\n" +
	"\r\n" +
	"the results are negative. This line must never cross the Internet in the clear.\r\n" +
	"\r\n" +
	"Alice\r\n"

// runDemo starts two gateways (example.org, example.net) on loopback with
// fresh keys, each holding the other's certificate, sends one message from
// alice@example.org to bob@example.net, and shows what travelled between
// the domains and what Bob's server received.
//
// The message does not go straight from one gateway to the other: the
// example.org gateway hands it to a "transit" sink that plays the Internet,
// and the demo carries it from there to the example.net gateway, so that it
// can show exactly the bytes that crossed.
func runDemo(args []string) error {
	fs := newFlagSet("demo", "[-keep]")
	keep := fs.Bool("keep", false, "keep the temporary directory (keys, configurations, logs, spools)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "smimegate-demo-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Printf("working directory (kept): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logPath := filepath.Join(dir, "gateways.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	err = demo(dir, logFile)
	if err != nil {
		logFile.Sync()
		if b, rerr := os.ReadFile(logPath); rerr == nil && len(b) > 0 {
			fmt.Fprintf(os.Stderr, "--- the gateways' log ---\n%s--- end of log ---\n", b)
		}
	}
	return err
}

func demo(dir string, logw io.Writer) error {
	step := func(format string, a ...any) { fmt.Printf("\n== "+format+"\n", a...) }

	step("1. Fresh domain certificates (RSA-2048) for example.org and example.net")
	for _, d := range []string{"example.org", "example.net"} {
		own := filepath.Join(dir, d, "own")
		if err := os.MkdirAll(own, 0o700); err != nil {
			return err
		}
		if err := withStdout(io.Discard, func() error {
			return runKeygen([]string{"-domain", d, "-key", "rsa2048", "-days", "30", "-out", own})
		}); err != nil {
			return fmt.Errorf("keygen for %s: %w", d, err)
		}
		fmt.Printf("   %s: %s\n", d, filepath.Join(own, d+".crt"))
	}
	for _, pair := range [][2]string{{"example.org", "example.net"}, {"example.net", "example.org"}} {
		partners := filepath.Join(dir, pair[0], "partners")
		if err := os.MkdirAll(partners, 0o700); err != nil {
			return err
		}
		crt, err := os.ReadFile(filepath.Join(dir, pair[1], "own", pair[1]+".crt"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(partners, pair[1]+".crt"), crt, 0o600); err != nil {
			return err
		}
	}

	transit, err := mailsink.Start("")
	if err != nil {
		return err
	}
	defer transit.Close()
	orgInbound, err := mailsink.Start("")
	if err != nil {
		return err
	}
	defer orgInbound.Close()
	bob, err := mailsink.Start("")
	if err != nil {
		return err
	}
	defer bob.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	orgAddr, orgDone, err := startDemoGateway(ctx, dir, "example.org", transit.Addr, orgInbound.Addr, `["127.0.0.0/8"]`, logw)
	if err != nil {
		return err
	}
	// The example.net gateway trusts no client: the message from the
	// "Internet" may only reach its local domain, as on a real border.
	netAddr, netDone, err := startDemoGateway(ctx, dir, "example.net", transit.Addr, bob.Addr, `[]`, logw)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		<-orgDone
		<-netDone
	}()
	step("2. Two gateways running")
	fmt.Printf("   example.org gateway: SMTP %s, next hop outbound: transit sink %s\n", orgAddr, transit.Addr)
	fmt.Printf("   example.net gateway: SMTP %s, next hop inbound: Bob's mail server (sink) %s\n", netAddr, bob.Addr)

	step("3. alice@example.org sends to bob@example.net through the example.org gateway")
	if err := smtp.SendMail(orgAddr, nil, "alice@example.org", []string{"bob@example.net"}, []byte(demoMessage)); err != nil {
		return fmt.Errorf("submitting to the example.org gateway: %w", err)
	}
	fmt.Print(indent(demoMessage))

	msgs, err := transit.Wait(1, 30*time.Second)
	if err != nil {
		return fmt.Errorf("the example.org gateway did not relay the message: %w", err)
	}
	crossed := msgs[0]
	step("4. What travelled between the domains (header and the first lines of ciphertext)")
	fmt.Print(indent(firstLines(string(crossed.Data), 6)))
	if bytes.Contains(crossed.Data, []byte("must never cross")) {
		return errors.New("the message crossed between the domains in the clear")
	}
	if !bytes.Contains(crossed.Data, []byte("application/pkcs7-mime")) {
		return errors.New("what crossed is not an S/MIME message")
	}

	if err := smtp.SendMail(netAddr, nil, crossed.From, crossed.To, crossed.Data); err != nil {
		return fmt.Errorf("handing the message to the example.net gateway: %w", err)
	}
	got, err := bob.Wait(1, 30*time.Second)
	if err != nil {
		return fmt.Errorf("the example.net gateway did not deliver to Bob's server: %w", err)
	}
	step("5. What Bob's mail server received from the example.net gateway")
	fmt.Print(indent(string(got[0].Data)))
	if !bytes.HasSuffix(got[0].Data, []byte(demoMessage)) {
		return errors.New("Bob's server did not receive Alice's message intact")
	}
	step("6. Alice's message arrived byte for byte (after the gateways' Received trace fields); it crossed encrypted.")
	return nil
}

// startDemoGateway writes a configuration for domain and runs a gateway
// with it until ctx ends.
func startDemoGateway(ctx context.Context, dir, domain, outbound, inbound, trusted string, logw io.Writer) (addr string, done <-chan struct{}, err error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	path := filepath.Join(dir, domain, "smimegate.toml")
	toml := fmt.Sprintf(`hostname = "gw.%[1]s"
state_dir = "state"
local_domains = ["%[1]s"]

[smtp]
listen = ["%[2]s"]
trusted_networks = %[5]s

[relay]
outbound = "%[3]s"
inbound = "%[4]s"
tls = "none"

[certs]
own = "own"
partners = "partners"

[admin]
listen = ""
`, domain, addr, outbound, inbound, trusted)
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		return "", nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return "", nil, err
	}
	ready := make(chan struct{})
	finished := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(finished)
		errc <- serve(ctx, path, cfg, newLogger(logw, "info").With("gateway", domain), ready)
	}()
	select {
	case <-ready:
		return addr, finished, nil
	case err := <-errc:
		return "", nil, fmt.Errorf("the %s gateway did not start: %w", domain, err)
	case <-time.After(30 * time.Second):
		return "", nil, fmt.Errorf("the %s gateway did not start within 30s", domain)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withStdout runs f with os.Stdout pointing at w.
func withStdout(w io.Writer, f func() error) error {
	r, wp, err := os.Pipe()
	if err != nil {
		return err
	}
	saved := os.Stdout
	os.Stdout = wp
	copied := make(chan struct{})
	go func() { io.Copy(w, r); close(copied) }()
	err = f()
	os.Stdout = saved
	wp.Close()
	<-copied
	r.Close()
	return err
}

func indent(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		b.WriteString("   | ")
		b.WriteString(sc.Text())
		b.WriteString("\n")
	}
	return b.String()
}

// firstLines returns the header section and the first n body lines.
func firstLines(msg string, n int) string {
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.SplitN(body, "\r\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "[...]")
	}
	return head + "\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n"
}
