// Command latency measures the delay smimegate adds at a steady rate: an
// open-loop Go load generator starts one message every 1/-rate seconds (on
// -conns kept-open connections), and each message's latency runs from its
// scheduled start until the sink has read its last byte. The same load goes
// to the sink directly (the reference) and through a gateway that encrypts
// every message to a partner, in alternating runs; the added p50 and p99
// are the differences. Latency counts from the scheduled time, not from when
// a connection was free, so a stalled gateway cannot hide its queue
// (coordinated omission). It also prints how long each series took until
// the sender had its 250, which splits the gateway's delay into receipt
// (with the spool's fsync) and the rest (routing, sealing, delivery).
//
//	go run ./bench/latency
//	go run ./bench/latency -postfix   # Postfix's plain relay as a third series
package main

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	"smimegate/bench/internal/rig"
	"smimegate/test/postfixtest"
)

func main() {
	rate := flag.Float64("rate", 100, "messages per second")
	duration := flag.Duration("duration", 15*time.Second, "length of each run")
	rounds := flag.Int("rounds", 2, "runs of each series, alternating")
	size := flag.Int("size", 10240, "message body size in bytes")
	conns := flag.Int("conns", 20, "connections the generator keeps open")
	withPostfix := flag.Bool("postfix", false, "also measure a Postfix plain relay")
	flag.Parse()

	h := rig.New("latency")
	defer h.Close()
	rig.Header("latency", fmt.Sprintf("%.0f msg/s, %v x %d rounds per series, %d B, %d connections", *rate, *duration, *rounds, *size, *conns))
	bin := rig.Build(h)
	org := rig.Keygen(h, bin, "example.org", "rsa2048")
	net := rig.Keygen(h, bin, "example.net", "rsa2048")

	sink := rig.StartSink(h, rig.SinkOptions{Track: true, Check: func(from string, data []byte) error {
		// The gateway series must arrive encrypted, the others plain.
		if strings.Contains(from, "smimegate-") != rig.IsSMIME(data) {
			return fmt.Errorf("encryption does not match the series")
		}
		return nil
	}})
	gw := rig.StartGateway(h, bin, rig.GatewayOptions{
		Domain: "example.org", Own: []rig.KeyFiles{org}, Partners: []rig.KeyFiles{net},
		Outbound: sink.Addr, Inbound: sink.Addr,
	})
	series := []struct{ name, addr string }{{"sink", sink.Addr}, {"smimegate", gw.Addr}}
	if *withPostfix {
		_, port, _ := strings.Cut(sink.Addr, ":")
		pf := postfixtest.Start(h, postfixtest.Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + port}})
		series = append(series, struct{ name, addr string }{"postfix", pf.Addr})
	}

	msg := rig.Message("alice@example.org", "bob@example.net", "", *size)
	interval := time.Duration(float64(time.Second) / *rate)
	lat := map[string][]time.Duration{}
	acked := map[string][]time.Duration{}
	for _, s := range series {
		// Warm-up: one second of load, not counted.
		paced(h, sink, s.addr, "warm-"+s.name, msg, interval, time.Second, *conns)
	}
	for i := range *rounds {
		for j := range series {
			s := series[(i+j)%len(series)]
			d, a := paced(h, sink, s.addr, fmt.Sprintf("%s-%d", s.name, i), msg, interval, *duration, *conns)
			fmt.Printf("  %-9s run %d: p50 %7.2f ms  p99 %7.2f ms  (%d messages; its 250 after p50 %.2f ms, p99 %.2f ms)\n",
				s.name, i+1, rig.Ms(rig.Percentile(d, 50)), rig.Ms(rig.Percentile(d, 99)), len(d), rig.Ms(rig.Percentile(a, 50)), rig.Ms(rig.Percentile(a, 99)))
			lat[s.name] = append(lat[s.name], d...)
			acked[s.name] = append(acked[s.name], a...)
		}
	}
	if bad, err := sink.Bad(); bad > 0 {
		h.Fatalf("%d messages arrived wrong; first: %v", bad, err)
	}

	fmt.Println()
	ref50, ref99 := rig.Percentile(lat["sink"], 50), rig.Percentile(lat["sink"], 99)
	fmt.Printf("latency sink alone     p50 %7.2f ms  p99 %7.2f ms\n", rig.Ms(ref50), rig.Ms(ref99))
	for _, s := range series[1:] {
		p50, p99 := rig.Percentile(lat[s.name], 50), rig.Percentile(lat[s.name], 99)
		added99 := p99 - ref99
		line := fmt.Sprintf("latency %-14s p50 %7.2f ms  p99 %7.2f ms  added p50 %7.2f ms  added p99 %7.2f ms",
			s.name, rig.Ms(p50), rig.Ms(p99), rig.Ms(p50-ref50), rig.Ms(added99))
		if s.name == "smimegate" {
			line += fmt.Sprintf("  (target added p99 <= 10 ms: %s)", rig.Verdict(rig.Ms(added99), 10, true))
		}
		fmt.Println(line)
	}
	// Where the time goes: until the client has its 250 (receipt and the
	// spool's fsync), and the rest (routing, sealing, delivery).
	for _, s := range series {
		fmt.Printf("latency %-14s until the 250: p50 %7.2f ms  p99 %7.2f ms\n", s.name,
			rig.Ms(rig.Percentile(acked[s.name], 50)), rig.Ms(rig.Percentile(acked[s.name], 99)))
	}
}

// paced sends one message every interval for d, each with its own envelope
// sender (prefix-SEQ@example.org) by which the sink records its arrival,
// waits until the sink holds all of them and returns their latencies, and
// the times from when each was due until its sender had the 250.
func paced(h *rig.Harness, sink *rig.Sink, addr, prefix string, msg []byte, interval, d time.Duration, conns int) (latencies, acked []time.Duration) {
	n := int(d / interval)
	type job struct {
		from string
		due  time.Time
	}
	jobs := make(chan job, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *rig.Client
			for j := range jobs {
				time.Sleep(time.Until(j.due))
				if c == nil {
					var err error
					if c, err = rig.Dial(addr); err != nil {
						mu.Lock()
						firstErr = cmpErr(firstErr, err)
						mu.Unlock()
						continue
					}
				}
				if err := c.Send(j.from, []string{"bob@example.net"}, bytes.NewReader(msg)); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					_ = c.Close()
					c = nil
					continue
				}
				ack := time.Since(j.due)
				mu.Lock()
				acked = append(acked, ack)
				mu.Unlock()
			}
			if c != nil {
				_ = c.Close()
			}
		}()
	}
	start := time.Now().Add(10 * time.Millisecond)
	due := make(map[string]time.Time, n)
	for i := range n {
		j := job{from: fmt.Sprintf("%s-%d@example.org", prefix, i), due: start.Add(time.Duration(i) * interval)}
		due[j.from] = j.due
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		h.Fatalf("%s: %v", addr, firstErr)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for from, t0 := range due {
		for {
			if t, ok := sink.Arrival(from); ok {
				latencies = append(latencies, t.Sub(t0))
				break
			}
			if time.Now().After(deadline) {
				h.Fatalf("%s: message %s never reached the sink", addr, from)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return latencies, acked
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
