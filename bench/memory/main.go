// Command memory measures the gateway's peak resident memory (VmHWM in
// /proc/PID/status, the high-water mark since the process started) while it
// relays one large message, and while it relays many 1 MB messages at once,
// each time in a fresh gateway process so that one peak does not hide the
// other. Outbound (encrypt to a partner) is what the targets name; inbound
// (decrypt) is measured too, since opening holds more than sealing.
//
// The reference printed beside each peak is the idle gateway's peak (the
// same binary before any mail) and the target bound; the ratio is peak over
// the message bytes in flight.
//
//	go run ./bench/memory
package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"smimegate/bench/internal/rig"
	"smimegate/internal/cms"
	"smimegate/internal/smime"
)

func main() {
	bigMB := flag.Int("big", 50, "size of the large message's body in MiB")
	n := flag.Int("concurrent", 100, "messages sent at once, each on its own connection")
	eachMB := flag.Int("each", 1, "size of each concurrent message's body in MiB")
	limitMB := flag.Int("max-message-mib", 100, "the gateway's smtp.max_message_bytes in MiB (a sealed 50 MiB message is about 68 MiB)")
	inbound := flag.Bool("inbound", true, "also measure the decrypt direction")
	repeats := flag.Int("repeat", 3, "fresh gateway processes per scenario; the highest peak counts")
	flag.Parse()

	h := rig.New("memory")
	defer h.Close()
	rig.Header("memory", fmt.Sprintf("one %d MiB message; %d x %d MiB at once; max_message_bytes %d MiB", *bigMB, *n, *eachMB, *limitMB))
	bin := rig.Build(h)
	org := rig.Keygen(h, bin, "example.org", "rsa2048")
	net := rig.Keygen(h, bin, "example.net", "rsa2048")
	netCert := loadCert(h, net.Cert)

	smtpLimits := fmt.Sprintf("max_message_bytes = %d\nmax_connections = %d\nmax_connections_per_client = %d\n",
		*limitMB<<20, *n+20, *n+20)
	outbound := func(sink *rig.Sink) *rig.Gateway {
		return rig.StartGateway(h, bin, rig.GatewayOptions{
			Domain: "example.org", Own: []rig.KeyFiles{org}, Partners: []rig.KeyFiles{net},
			Outbound: sink.Addr, Inbound: sink.Addr, SMTP: smtpLimits,
		})
	}
	inboundGW := func(sink *rig.Sink) *rig.Gateway {
		return rig.StartGateway(h, bin, rig.GatewayOptions{
			Domain: "example.net", Own: []rig.KeyFiles{net}, Partners: []rig.KeyFiles{org},
			Outbound: sink.Addr, Inbound: sink.Addr, SMTP: smtpLimits,
		})
	}
	plain := func(mib int) []byte {
		return rig.Message("alice@example.org", "bob@example.net", "", mib<<20)
	}
	seal := func(msg []byte) []byte {
		msg = append(msg, make([]byte, smime.SealSpare)...)[:len(msg)]
		var out bytes.Buffer
		if err := smime.Seal(&out, msg, smime.SealOptions{Recipients: []cms.Recipient{{Cert: netCert}}, Cipher: cms.AES256GCM}); err != nil {
			h.Fatalf("sealing: %v", err)
		}
		return out.Bytes()
	}

	type scenario struct {
		name   string
		target int64 // bytes; 0: none stated
		start  func(*rig.Sink) *rig.Gateway
		check  func(string, []byte) error
		msgs   func() [][]byte
	}
	scenarios := []scenario{
		{fmt.Sprintf("outbound 1 x %d MiB", *bigMB), 150 << 20, outbound, mustBeSMIME,
			func() [][]byte { return [][]byte{plain(*bigMB)} }},
		{fmt.Sprintf("outbound %d x %d MiB", *n, *eachMB), 400 << 20, outbound, mustBeSMIME,
			func() [][]byte { return repeat(plain(*eachMB), *n) }},
	}
	if *inbound {
		scenarios = append(scenarios,
			scenario{fmt.Sprintf("inbound  1 x %d MiB", *bigMB), 0, inboundGW, mustBePlain,
				func() [][]byte { return [][]byte{seal(plain(*bigMB))} }},
			scenario{fmt.Sprintf("inbound  %d x %d MiB", *n, *eachMB), 0, inboundGW, mustBePlain,
				func() [][]byte { return repeat(seal(plain(*eachMB)), *n) }})
	}

	var lines []string
	for _, sc := range scenarios {
		msgs := sc.msgs()
		var inFlight int64
		for _, m := range msgs {
			inFlight += int64(len(m))
		}
		// The peak depends on when the garbage collector ran, so each
		// scenario runs in several fresh processes and the worst counts.
		var peaks []int64
		var idle int64
		for range *repeats {
			p, i, d := measure(h, sc.start, sc.check, msgs)
			peaks = append(peaks, p)
			idle = max(idle, i)
			fmt.Printf("  %-22s peak RSS %10s  (%.1f s)\n", sc.name, rig.MiB(p), d.Seconds())
		}
		peak := slices.Max(peaks)
		line := fmt.Sprintf("memory %-22s peak RSS %10s (lowest %s)  idle %s  %.2f x the %s sent",
			sc.name, rig.MiB(peak), rig.MiB(slices.Min(peaks)), rig.MiB(idle), float64(peak)/float64(inFlight), rig.MiB(inFlight))
		if sc.target > 0 {
			line += fmt.Sprintf("  target <= %s: %.2f of it, %s", rig.MiB(sc.target), float64(peak)/float64(sc.target),
				rig.Verdict(float64(peak), float64(sc.target), true))
		}
		lines = append(lines, line)
	}
	fmt.Println()
	for _, l := range lines {
		fmt.Println(l)
	}
}

// measure starts a fresh gateway, sends msgs through it all at once, waits
// until the sink holds them, and returns the gateway's peak and idle RSS
// and the time it took.
func measure(h *rig.Harness, start func(*rig.Sink) *rig.Gateway, check func(string, []byte) error, msgs [][]byte) (peak, idle int64, d time.Duration) {
	sink := rig.StartSink(h, rig.SinkOptions{Check: check})
	gw := start(sink)
	_, idle, err := gw.Memory()
	if err != nil {
		h.Fatalf("%v", err)
	}
	t0 := time.Now()
	sendConcurrently(h, gw.Addr, msgs)
	if _, err := sink.WaitCount(len(msgs), 10*time.Minute); err != nil {
		h.Fatalf("%v", err)
	}
	d = time.Since(t0)
	_, peak, err = gw.Memory()
	if err != nil {
		h.Fatalf("%v", err)
	}
	if bad, err := sink.Bad(); bad > 0 {
		h.Fatalf("%d messages arrived wrong; first: %v", bad, err)
	}
	gw.Stop()
	return peak, idle, d
}

// sendConcurrently sends every message on its own connection, all at once.
func sendConcurrently(h *rig.Harness, addr string, msgs [][]byte) {
	var wg sync.WaitGroup
	errs := make(chan error, len(msgs))
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rig.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			if err := c.Send("alice@example.org", []string{"bob@example.net"}, bytes.NewReader(m)); err != nil {
				errs <- err
			}
			_ = c.Close()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		h.Fatalf("sending: %v", err)
	}
}

func repeat(m []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = m
	}
	return out
}

func loadCert(h *rig.Harness, path string) *x509.Certificate {
	b, err := os.ReadFile(path)
	if err != nil {
		h.Fatalf("%v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		h.Fatalf("%s is not PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		h.Fatalf("%s: %v", path, err)
	}
	return c
}

func mustBeSMIME(_ string, data []byte) error {
	if !rig.IsSMIME(data) {
		return fmt.Errorf("not encrypted")
	}
	return nil
}

func mustBePlain(_ string, data []byte) error {
	if rig.IsSMIME(data) || !bytes.Contains(data, []byte("The quick brown fox")) {
		return fmt.Errorf("not decrypted")
	}
	return nil
}
