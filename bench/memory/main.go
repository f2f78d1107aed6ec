// Command memory measures the gateway's peak resident memory (VmHWM in
// /proc/PID/status, the high-water mark since the process started) while it
// relays one large message, and while it relays many 1 MB messages at once,
// each time in a fresh gateway process so that one peak does not hide the
// other. Outbound (encrypt to a partner) is what the targets name; inbound
// (decrypt) is measured too, since opening holds more than sealing.
//
// Two hostile inputs are measured beside the honest ones (-bombs): an
// EnvelopedData with over a million tiny RecipientInfos (about 47 MB), and
// a message encrypted to us whose plaintext is a message/rfc822 part in
// base64 with a blank between every character, which a decoder that splits
// lines into fields turns into millions of allocations. Their target is the
// issue's: peak RSS at most twice the largest message plus the memory
// budget (limits.memory, set here to -budget MiB).
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
	"encoding/base64"
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
	bombs := flag.Bool("bombs", true, "also measure the two hostile inputs")
	honest := flag.Bool("honest", true, "measure the honest messages (-honest=false: the bombs alone)")
	budgetMiB := flag.Int("budget", 512, "limits.memory of the gateways, in MiB")
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
	limits := fmt.Sprintf("[limits]\nmemory = \"%dMiB\"\n", *budgetMiB)
	outbound := func(sink *rig.Sink) *rig.Gateway {
		return rig.StartGateway(h, bin, rig.GatewayOptions{
			Domain: "example.org", Own: []rig.KeyFiles{org}, Partners: []rig.KeyFiles{net},
			Outbound: sink.Addr, Inbound: sink.Addr, SMTP: smtpLimits, Extra: limits,
		})
	}
	inboundGW := func(sink *rig.Sink) *rig.Gateway {
		return rig.StartGateway(h, bin, rig.GatewayOptions{
			Domain: "example.net", Own: []rig.KeyFiles{net}, Partners: []rig.KeyFiles{org},
			Outbound: sink.Addr, Inbound: sink.Addr, SMTP: smtpLimits, Extra: limits,
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
		// hostile: the message may end in the quarantine rather than at
		// the sink; the peak is measured once it is in either.
		hostile bool
	}
	scenarios := []scenario{
		{fmt.Sprintf("outbound 1 x %d MiB", *bigMB), 150 << 20, outbound, mustBeSMIME,
			func() [][]byte { return [][]byte{plain(*bigMB)} }, false},
		{fmt.Sprintf("outbound %d x %d MiB", *n, *eachMB), 400 << 20, outbound, mustBeSMIME,
			func() [][]byte { return repeat(plain(*eachMB), *n) }, false},
	}
	if !*honest {
		scenarios = nil
	}
	if *inbound && *honest {
		scenarios = append(scenarios,
			scenario{fmt.Sprintf("inbound  1 x %d MiB", *bigMB), 0, inboundGW, mustBePlain,
				func() [][]byte { return [][]byte{seal(plain(*bigMB))} }, false},
			scenario{fmt.Sprintf("inbound  %d x %d MiB", *n, *eachMB), 0, inboundGW, mustBePlain,
				func() [][]byte { return repeat(seal(plain(*eachMB)), *n) }, false})
	}
	if *bombs {
		budget := int64(*budgetMiB) << 20
		manyRIs := recipientInfoBomb(1_200_000)
		blanks := seal(blankBase64Bomb(45 << 20))
		scenarios = append(scenarios,
			scenario{fmt.Sprintf("bomb: %d KiB of RecipientInfos", len(manyRIs)>>10), 2*int64(len(manyRIs)) + budget, inboundGW, anything,
				func() [][]byte { return [][]byte{manyRIs} }, true},
			scenario{fmt.Sprintf("bomb: %d KiB of spaced base64", len(blanks)>>10), 2*int64(len(blanks)) + budget, inboundGW, anything,
				func() [][]byte { return [][]byte{blanks} }, true})
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
			p, i, d := measure(h, sc.start, sc.check, msgs, sc.hostile)
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
func measure(h *rig.Harness, start func(*rig.Sink) *rig.Gateway, check func(string, []byte) error, msgs [][]byte, hostile bool) (peak, idle int64, d time.Duration) {
	sink := rig.StartSink(h, rig.SinkOptions{Check: check})
	gw := start(sink)
	_, idle, err := gw.Memory()
	if err != nil {
		h.Fatalf("%v", err)
	}
	t0 := time.Now()
	sendConcurrently(h, gw.Addr, msgs)
	if hostile {
		waitSettled(h, gw, sink, len(msgs))
	} else if _, err := sink.WaitCount(len(msgs), 10*time.Minute); err != nil {
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

// waitSettled waits until n messages have either reached the sink or gone
// to the quarantine.
func waitSettled(h *rig.Harness, gw *rig.Gateway, sink *rig.Sink, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		q := gw.MustMetric(h, "smimegate_quarantined_total")
		if sink.Count()+int(q) >= n {
			return
		}
		if time.Now().After(deadline) {
			h.Fatalf("%d message(s) neither delivered nor quarantined after 10 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recipientInfoBomb is an S/MIME message whose EnvelopedData (RFC 5652
// section 6.1) carries n KeyTransRecipientInfos of a few bytes each, none
// for anyone, and a one-block content: small per RecipientInfo on the wire,
// large per RecipientInfo in a parser that materialises them all.
func recipientInfoBomb(n int) []byte {
	tlv := func(tag byte, content ...[]byte) []byte {
		var body []byte
		for _, c := range content {
			body = append(body, c...)
		}
		return append(append([]byte{tag}, derLength(len(body))...), body...)
	}
	rsaEncryption := []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00}
	// version 2, rid [0] subjectKeyIdentifier of one byte, rsaEncryption,
	// a one-byte encryptedKey.
	ri := tlv(0x30, []byte{0x02, 0x01, 0x02}, []byte{0x80, 0x01, 0x00}, rsaEncryption, []byte{0x04, 0x01, 0x00})
	ris := bytes.Repeat(ri, n)
	set := append(append([]byte{0x31}, derLength(len(ris))...), ris...)
	data := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	aes256CBC := tlv(0x30, []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}, tlv(0x04, make([]byte, 16)))
	eci := tlv(0x30, data, aes256CBC, tlv(0x80, make([]byte, 16)))
	env := tlv(0x30, []byte{0x02, 0x01, 0x02}, set, eci)
	envelopedData := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	ci := tlv(0x30, envelopedData, tlv(0xa0, env))
	var b bytes.Buffer
	b.WriteString("From: <mallory@elsewhere.test>\r\nTo: <bob@example.net>\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(ci)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func derLength(n int) []byte {
	if n < 0x80 {
		return []byte{byte(n)}
	}
	var l []byte
	for ; n > 0; n >>= 8 {
		l = append([]byte{byte(n)}, l...)
	}
	return append([]byte{0x80 | byte(len(l))}, l...)
}

// blankBase64Bomb is a message of about size bytes whose body is a
// message/rfc822 entity in base64 on one line, with a blank after every
// character: valid base64 for a lenient decoder (MTAs add blanks), one field
// per character for one that splits a line on blanks. The entity itself is
// an ordinary message.
func blankBase64Bomb(size int) []byte {
	inner := rig.Message("mallory@elsewhere.test", "bob@example.net", "", size/3)
	enc := base64.StdEncoding.EncodeToString(inner)
	var b bytes.Buffer
	b.Grow(2*len(enc) + 1024)
	b.WriteString("From: <mallory@elsewhere.test>\r\nTo: <bob@example.net>\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(enc); i++ {
		b.WriteByte(enc[i])
		b.WriteByte(' ')
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func anything(string, []byte) error { return nil }

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
