package courier

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Under TLS 1.3 a server can make the client write in the middle of a
// reply: a KeyUpdate that asks for one in return (RFC 8446 section
// 4.6.3) makes Go's TLS stack send its own. Such writes must not buy the
// server time. The next hop here is openssl s_server behind a plaintext
// front that does the greeting, EHLO and STARTTLS and then splices the
// connection to it; s_server dribbles its reply to MAIL one byte every
// 200 ms with a KeyUpdate request after each byte, and the courier cuts
// it at the command timeout all the same.
func TestTLSKeyUpdatesDoNotExtendAReply(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	p := testPKI()
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.cert.PrivateKey)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Certificate[0]}), 0o600))
	must(os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))

	var tlsAddr string
	var stdin io.WriteCloser
	var stdout io.Reader
	for try := 0; ; try++ {
		tlsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		cmd := exec.Command(openssl, "s_server", "-tls1_3", "-cert", filepath.Join(dir, "cert.pem"), "-key", filepath.Join(dir, "key.pem"), "-accept", tlsAddr)
		stdin, err = cmd.StdinPipe()
		must(err)
		out, err := cmd.StdoutPipe()
		must(err)
		stdout = out
		must(cmd.Start())
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		if listening(tlsAddr, done) {
			break
		}
		if try == 4 {
			t.Fatal("openssl s_server did not start")
		}
	}
	// What the courier says inside TLS, line by line, as s_server prints
	// it among its own chatter.
	said := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			said <- sc.Text()
		}
		close(said)
	}()
	await := func(prefix string) bool {
		for line := range said {
			if strings.HasPrefix(line, prefix) {
				return true
			}
		}
		return false
	}
	dribbled := make(chan bool, 1)
	go func() {
		if !await("EHLO") {
			return
		}
		_, _ = io.WriteString(stdin, "250-tls.test\r\n250 ENHANCEDSTATUSCODES\r\n")
		if !await("MAIL FROM:") {
			return
		}
		reply := "250 2.1.0 Ok, at one byte per 200 ms\r\n"
		for i := 0; i < len(reply); i++ {
			if i == len(reply)-1 {
				dribbled <- true // reported before the last byte, as the dribbler does
			}
			// Each write is read by s_server on its own: a byte of the
			// reply, then "K", its command for a KeyUpdate that asks
			// for one in return.
			if _, err := io.WriteString(stdin, reply[i:i+1]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(stdin, "K\n"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	front, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	rawServer(t, front, func(c net.Conn) {
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "220 front.test ESMTP\r\n")
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "EHLO") {
			return
		}
		fmt.Fprintf(c, "250-front.test\r\n250 STARTTLS\r\n")
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "STARTTLS") {
			return
		}
		fmt.Fprintf(c, "220 2.0.0 Ready to start TLS\r\n")
		back, err := net.Dial("tcp", tlsAddr)
		if err != nil {
			return
		}
		defer back.Close()
		go func() { _, _ = io.Copy(back, br) }()
		_, _ = io.Copy(c, back)
	})

	c, _ := newCourier(t, Config{TLS: TLSRequired, CommandTimeout: time.Second})
	res := deliver(t, c, Route{NextHop: front.Addr().String()}, newMessage("KU1", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !strings.HasPrefix(res[0].TLS, "TLS1.3") || !strings.Contains(res[0].Diagnostic(), "timeout") {
		t.Errorf("%+v", res[0])
	}
	select {
	case <-dribbled:
		t.Error("the courier waited for the whole reply: the key updates bought the server time")
	default:
	}
}

// listening waits until something accepts connections on addr.
func listening(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
