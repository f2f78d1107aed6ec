package courier

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallBuffers makes a socket's kernel buffer small, so that a slow peer
// shows in our writes at once instead of after megabytes of buffering.
func smallBuffers(opt int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
		if err != nil {
			return err
		}
		return serr
	}
}

// A next hop that takes the content at a few kilobytes a second, each
// write within the command timeout, is cut once it falls behind
// MinDataRate: the recipient is deferred with nothing delivered, and the
// server never had the whole message. Before the fix each write had the
// command timeout afresh, and a large message could be held for days.
func TestSlowReaderIsCutAtMinDataRate(t *testing.T) {
	t.Parallel()
	lc := net.ListenConfig{Control: smallBuffers(syscall.SO_RCVBUF)}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	must(err)
	body := testBody + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 4096) // 256 KiB
	taken := make(chan int, 1)
	rawServer(t, l, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 512)
		line := func() string {
			s, _ := br.ReadString('\n')
			return strings.TrimRight(s, "\r\n")
		}
		fmt.Fprintf(c, "220 slow.test ESMTP\r\n")
		line()
		fmt.Fprintf(c, "250 slow.test\r\n")
		line()
		fmt.Fprintf(c, "250 2.1.0 Ok\r\n")
		line()
		fmt.Fprintf(c, "250 2.1.5 Ok\r\n")
		line()
		fmt.Fprintf(c, "354 go ahead, slowly\r\n")
		// 3200 bytes every 100 ms: 32 KB/s, so that one 64 KiB write
		// takes two seconds, within the command timeout of three.
		n := 0
		buf := make([]byte, 3200)
		for {
			k, err := br.Read(buf)
			n += k
			if err != nil {
				taken <- n
				return
			}
			if strings.HasSuffix(string(buf[:k]), "\r\n.\r\n") {
				taken <- n
				fmt.Fprintf(c, "250 2.0.0 queued\r\n")
				line()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone, CommandTimeout: 3 * time.Second, MinDataRate: 1 << 20})
	c.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{Control: smallBuffers(syscall.SO_SNDBUF)}
		return d.DialContext(ctx, "tcp", addr)
	}
	res := deliver(t, c, Route{NextHop: l.Addr().String()}, newMessage("SR1", "a@example.org", body, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "slower than 1048576 bytes/s") {
		t.Errorf("%+v", res[0])
	}
	select {
	case n := <-taken:
		if n >= len(body) {
			t.Errorf("the server took all %d bytes: the slow reader was waited out", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server never finished reading")
	}
}
