// Command relay measures end-to-end relay throughput: smimegate encrypting
// every message to a partner domain against a Postfix plain relay (no
// crypto, default fsync) on the same machine, in alternating runs of the
// same load, with the ratio printed at the end.
//
// A second smimegate signs every message before it encrypts it (policy.sign
// = true, RFC 3183 domain signatures with our own key, RSA-2048 unless
// -own-key says otherwise), so that
// the cost of signing is measured beside the same gateway without it, in
// the same run.
//
// Each run sends -messages messages of each -sizes body size with Postfix's
// smtp-source over -sessions parallel sessions (a new connection per
// message, smtp-source's default); its time runs from the start of
// smtp-source until the sink holds the last message. The sink is the same
// Go SMTP server for both (bench/internal/rig), and it checks every message:
// smimegate's must be S/MIME, Postfix's must not.
//
// With -reference-bin, a third smimegate built from another tree (main,
// say) runs the same load with the same keys in the same run, so that a
// change is measured against what it changes rather than against an
// earlier run on a machine whose load has moved since.
//
//	go run ./bench/relay                     # 10 KB and 100 KB, 20 sessions
//	go run ./bench/relay -perf /tmp/relay.perf.data   # and profile the gateway
//	go run ./bench/relay -sizes 10240 -reference-bin /tmp/smimegate-main
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"smimegate/bench/internal/rig"
	"smimegate/test/postfixtest"
)

func main() {
	sizes := flag.String("sizes", "10240,102400", "comma-separated message body `sizes` in bytes")
	sessions := flag.Int("sessions", 20, "parallel SMTP sessions")
	messages := flag.Int("messages", 300, "messages per run")
	rounds := flag.Int("rounds", 3, "runs of each system per size, alternating")
	perfOut := flag.String("perf", "", "record the gateway with perf into `FILE` and print the top costs")
	pprofOut := flag.String("pprof", "", "fetch a Go CPU profile of the gateway's first timed run from its /debug/pprof into `FILE` (give -messages enough for -pprof-seconds)")
	pprofSeconds := flag.Int("pprof-seconds", 5, "length of the -pprof profile in seconds")
	ownKey := flag.String("own-key", "rsa2048", "key `type` of our own domain certificate, which signs when sign = true (rsa2048, p256, ...)")
	stateParent := flag.String("state-parent", "", "make the gateway's state_dir under `DIR` (e.g. /dev/shm, to see what the spool's file system costs; not durable there)")
	refBin := flag.String("reference-bin", "", "also run the smimegate binary `FILE` (built from another tree) as \"reference\", with the same keys and load, and compare against it")
	flag.Parse()
	sizeList, err := parseSizes(*sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(2)
	}

	h := rig.New("relay")
	defer h.Close()
	rig.Header("relay", fmt.Sprintf("%d messages x %d rounds, %d sessions, own key %s", *messages, *rounds, *sessions, *ownKey))

	bin := rig.Build(h)
	own := rig.Keygen(h, bin, "example.org", *ownKey)
	partner := rig.Keygen(h, bin, "example.net", "rsa2048")

	gwSink := rig.StartSink(h, rig.SinkOptions{Check: mustBeSMIME})
	pfSink := rig.StartSink(h, rig.SinkOptions{Check: mustBePlain})
	gw := rig.StartGateway(h, bin, rig.GatewayOptions{
		Domain: "example.org", Own: []rig.KeyFiles{own}, Partners: []rig.KeyFiles{partner},
		Outbound: gwSink.Addr, Inbound: gwSink.Addr, StateParent: *stateParent,
	})
	signSink := rig.StartSink(h, rig.SinkOptions{Check: mustBeSMIME})
	signing := rig.StartGateway(h, bin, rig.GatewayOptions{
		Domain: "example.org", Own: []rig.KeyFiles{own}, Partners: []rig.KeyFiles{partner},
		Outbound: signSink.Addr, Inbound: signSink.Addr, StateParent: *stateParent,
		Extra: "[policy]\nsign = true\n",
	})
	_, port, _ := strings.Cut(pfSink.Addr, ":")
	pf := postfixtest.Start(h, postfixtest.Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + port}})

	pfMaster, err := rig.PostfixMaster(pf.QueueDir)
	if err != nil {
		h.Fatalf("%v", err)
	}
	// The ceiling: smtp-source straight into a sink of its own, nothing in
	// between. No relay on this machine can beat it, since the load
	// generator and the sink share the same cores with the relay.
	directSink := rig.StartSink(h, rig.SinkOptions{Check: mustBePlain})
	systems := []*rig.System{
		{Name: "smimegate", Addr: gw.Addr, Sink: gwSink, CPU: func() (time.Duration, error) { return rig.CPUTime(gw.PID()) }},
		{Name: "postfix", Addr: pf.Addr, Sink: pfSink, CPU: func() (time.Duration, error) { return rig.TreeCPUTime(pfMaster) }},
		{Name: "direct", Addr: directSink.Addr, Sink: directSink, CPU: func() (time.Duration, error) { return 0, nil }},
		{Name: "sign=true", Addr: signing.Addr, Sink: signSink, CPU: func() (time.Duration, error) { return rig.CPUTime(signing.PID()) }},
	}
	var ref *rig.Gateway
	var refSink *rig.Sink
	if *refBin != "" {
		refSink = rig.StartSink(h, rig.SinkOptions{Check: mustBeSMIME})
		ref = rig.StartGateway(h, *refBin, rig.GatewayOptions{
			Domain: "example.org", Own: []rig.KeyFiles{own}, Partners: []rig.KeyFiles{partner},
			Outbound: refSink.Addr, Inbound: refSink.Addr, StateParent: *stateParent,
		})
		systems = append(systems, &rig.System{Name: "reference", Addr: ref.Addr, Sink: refSink, CPU: func() (time.Duration, error) { return rig.CPUTime(ref.PID()) }})
	}

	// One small run each first: connections, page cache and Postfix's
	// daemons are warm before anything is timed.
	warm := min(*messages, 40)
	for _, sys := range systems {
		sys.RunSource(h, warm, *sessions, 1024)
	}

	var perf *rig.Perf
	if *perfOut != "" {
		perf = rig.StartPerf(h, gw.PID(), *perfOut)
	}

	type result struct{ wall, cpu [5]time.Duration }
	results := map[int]*result{}
	for _, size := range sizeList {
		r := &result{}
		results[size] = r
		for i := range *rounds {
			// Alternate who goes first, so that a slow spell of the
			// shared machine does not always hit the same system.
			for j := range systems {
				k := (i + j) % len(systems)
				var profiled chan error
				if *pprofOut != "" && k == 0 && i == 0 && size == sizeList[0] {
					profiled = make(chan error, 1)
					go func() { profiled <- rig.FetchProfile(gw, *pprofSeconds, *pprofOut) }()
				}
				wall, cpu := systems[k].RunSource(h, *messages, *sessions, size)
				if profiled != nil {
					if err := <-profiled; err != nil {
						h.Fatalf("-pprof: %v", err)
					}
					fmt.Printf("  (Go CPU profile of the gateway in %s: go tool pprof -top %s)\n", *pprofOut, *pprofOut)
				}
				r.wall[k] += wall
				r.cpu[k] += cpu
				fmt.Printf("  %-9s %6d B  run %d: %7.1f msg/s  %6.2f ms CPU/msg\n",
					systems[k].Name, size, i+1, float64(*messages)/wall.Seconds(), rig.Ms(cpu)/float64(*messages))
			}
		}
	}

	var report string
	if perf != nil {
		report, err = perf.Report(45)
		if err != nil {
			h.Fatalf("%v", err)
		}
	}
	checkSinks(h, gw, gwSink, pfSink)
	checkSinks(h, signing, signSink, pfSink)
	if ref != nil {
		checkSinks(h, ref, refSink, pfSink)
	}

	fmt.Println()
	n := float64(*messages * *rounds)
	for _, size := range sizeList {
		r := results[size]
		gwRate, pfRate, ceiling := n/r.wall[0].Seconds(), n/r.wall[1].Seconds(), n/r.wall[2].Seconds()
		ratio := gwRate / pfRate
		line := fmt.Sprintf("relay %6d B: smimegate %7.1f msg/s  postfix %7.1f msg/s  ratio %.2f", size, gwRate, pfRate, ratio)
		if size == 10240 {
			line += fmt.Sprintf("  (target >= 4: %s)", rig.Verdict(ratio, 4, false))
		}
		fmt.Println(line)
		fmt.Printf("relay %6d B: ceiling (smtp-source straight into a sink) %7.1f msg/s: smimegate reaches %.0f %%, postfix %.0f %%; a ratio above %.2f cannot be shown on this machine\n",
			size, ceiling, 100*gwRate/ceiling, 100*pfRate/ceiling, ceiling/pfRate)
		gwCPU, pfCPU := rig.Ms(r.cpu[0])/n, rig.Ms(r.cpu[1])/n
		fmt.Printf("relay %6d B: CPU per message: smimegate %.2f ms  postfix %.2f ms (all its processes)  ratio %.2f\n",
			size, gwCPU, pfCPU, pfCPU/gwCPU)
		signRate, signCPU := n/r.wall[3].Seconds(), rig.Ms(r.cpu[3])/n
		line = fmt.Sprintf("relay %6d B, sign = true: smimegate %7.1f msg/s  ratio to postfix %.2f  (%.2f of sign = false); CPU %.2f ms per message (+%.2f ms for the signature)",
			size, signRate, signRate/pfRate, signRate/gwRate, signCPU, signCPU-gwCPU)
		if size == 10240 {
			line += fmt.Sprintf("  (target >= 4: %s)", rig.Verdict(signRate/pfRate, 4, false))
		}
		fmt.Println(line)
		if ref != nil {
			refRate, refCPU := n/r.wall[4].Seconds(), rig.Ms(r.cpu[4])/n
			fmt.Printf("relay %6d B, against -reference-bin: smimegate %.2f of the ceiling, the reference %.2f; CPU per message %.3f ms against %.3f ms (%.2f of the reference's)\n",
				size, gwRate/ceiling, refRate/ceiling, gwCPU, refCPU, gwCPU/refCPU)
		}
	}
	if report != "" {
		fmt.Printf("\nperf profile of the gateway (self time, %s):\n%s", *perfOut, report)
	}
}

// checkSinks fails the benchmark unless every message was what it should
// be: a figure for a gateway that stopped encrypting would be meaningless.
func checkSinks(h *rig.Harness, gw *rig.Gateway, gwSink, pfSink *rig.Sink) {
	for name, s := range map[string]*rig.Sink{"smimegate": gwSink, "postfix": pfSink} {
		if bad, err := s.Bad(); bad > 0 {
			h.Fatalf("%s: %d of %d messages at the sink were wrong; first: %v", name, bad, s.Count(), err)
		}
	}
	enc := gw.MustMetric(h, `smimegate_decisions_total{action="encrypt"}`)
	if int(enc) != gwSink.Count() {
		h.Fatalf("smimegate encrypted %v messages but the sink holds %d", enc, gwSink.Count())
	}
}

func mustBeSMIME(_ string, data []byte) error {
	if !rig.IsSMIME(data) {
		return fmt.Errorf("not encrypted (no application/pkcs7-mime header)")
	}
	return nil
}

func mustBePlain(_ string, data []byte) error {
	if rig.IsSMIME(data) {
		return fmt.Errorf("the plain relay delivered an S/MIME message")
	}
	return nil
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a positive byte count", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
