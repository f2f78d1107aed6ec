package smtpd

import (
	"fmt"
	"net"
	"net/textproto"
	"testing"
)

// sendMessagesBDAT sends n messages over one session with BDAT: MAIL,
// RCPT and one BDAT LAST pipelined, as the courier does (RFC 3030 section
// 4.2).
func sendMessagesBDAT(addr string, n int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return err
	}
	tp.PrintfLine("EHLO bench.example")
	if _, _, err := tp.ReadResponse(250); err != nil {
		return err
	}
	group := []byte(fmt.Sprintf("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT %d LAST\r\n%s", len(benchBody), benchBody))
	for range n {
		if _, err := conn.Write(group); err != nil {
			return err
		}
		for range 3 {
			if _, _, err := tp.ReadResponse(250); err != nil {
				return err
			}
		}
	}
	tp.PrintfLine("QUIT")
	return nil
}

// BenchmarkReceiveBDAT10KB: the same messages as BenchmarkReceiveDATA10KB
// with BDAT, which has no dot-stuffing to undo and one round trip less.
func BenchmarkReceiveBDAT10KB(b *testing.B) {
	benchReceive(b, sendMessagesBDAT)
}
