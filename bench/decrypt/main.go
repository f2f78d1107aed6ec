// Command decrypt measures the inbound path: how many encrypted messages per
// second a gateway opens and relays, for an RSA-2048, a P-256, an ML-KEM-768
// and a composite ML-KEM-768 + X25519 domain key, divided by the raw
// private-key operations per second that Go achieves on this machine times
// its cores, the physical limit of that path (one private-key operation,
// or decapsulation, per message). It ends with how many times faster than
// RSA-2048's private operation each key's is, measured in the same run.
//
// The messages are sealed in advance, in this process, with the gateway's
// own certificate (internal/smime.Seal, as a partner's gateway would), each
// with a marker header inside the encryption; the sink checks that every
// message arrives decrypted with its marker. The load is the Go sender in
// bench/internal/rig (-sessions connections, each kept open). The raw rate
// is measured in the same run, before and after the gateway's runs:
// rsa.DecryptPKCS1v15SessionKey for RSA (what internal/cms calls),
// ecdh.PrivateKey.ECDH for P-256, and cms.KEMPrivateKey.Decapsulate for the
// KEM keys (ML-KEM's decapsulation; for the composite also the X25519
// agreement and the SHA3-256 combiner).
//
//	go run ./bench/decrypt
package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"flag"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smimegate/bench/internal/rig"
	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/smime"
)

func main() {
	keys := flag.String("keys", "rsa2048,p256,mlkem768,mlkem768-x25519", "comma-separated domain key types")
	size := flag.Int("size", 10240, "message body size in bytes")
	sessions := flag.Int("sessions", 20, "parallel SMTP sessions")
	messages := flag.Int("messages", 300, "messages per run")
	rounds := flag.Int("rounds", 2, "gateway runs per key type")
	rawTime := flag.Duration("raw", 2*time.Second, "how long each raw private-key measurement runs")
	pprofOut := flag.String("pprof", "", "fetch a Go CPU profile of the first key type's first run from the gateway's /debug/pprof into `FILE` (give -messages enough for -pprof-seconds)")
	pprofSeconds := flag.Int("pprof-seconds", 3, "length of the -pprof profile in seconds")
	flag.Parse()

	h := rig.New("decrypt")
	defer h.Close()
	cores := runtime.NumCPU()
	rig.Header("decrypt", fmt.Sprintf("%d B, %d messages x %d rounds, %d sessions", *size, *messages, *rounds, *sessions))
	bin := rig.Build(h)

	var lines []string
	rawRates := map[string]float64{} // single-core private operations per second, by key type
	keyList := strings.Split(*keys, ",")
	for _, keyType := range keyList {
		keyType = strings.TrimSpace(keyType)
		own := rig.Keygen(h, bin, "example.net", keyType)
		cert, priv := loadKeyPair(h, own)
		op := rawOp(h, priv)

		sink := rig.StartSink(h, rig.SinkOptions{Check: mustBeOpened})
		gw := rig.StartGateway(h, bin, rig.GatewayOptions{
			Domain: "example.net", Own: []rig.KeyFiles{own}, Outbound: sink.Addr, Inbound: sink.Addr,
		})
		warm := sealed(h, cert, min(40, *messages), 1024)
		run(h, gw.Addr, sink, *sessions, warm)

		var gwTime, gwCPU time.Duration
		var single, parallel float64
		for i := range *rounds {
			s, p := measureRaw(op, *rawTime, cores)
			single += s
			parallel += p
			jobs := sealed(h, cert, *messages, *size)
			var profiled chan error
			if *pprofOut != "" && i == 0 && keyType == keyList[0] {
				profiled = make(chan error, 1)
				go func() { profiled <- rig.FetchProfile(gw, *pprofSeconds, *pprofOut) }()
			}
			cpu0 := cpuTime(h, gw)
			d := run(h, gw.Addr, sink, *sessions, jobs)
			c := cpuTime(h, gw) - cpu0
			if profiled != nil {
				if err := <-profiled; err != nil {
					h.Fatalf("-pprof: %v", err)
				}
				fmt.Printf("  (Go CPU profile of the gateway in %s: go tool pprof -top %s)\n", *pprofOut, *pprofOut)
			}
			gwTime += d
			gwCPU += c
			fmt.Printf("  %-15s run %d: gateway %7.1f msg/s, %5.2f ms CPU/msg   raw %8.1f ops/s on one core, %8.1f on %d\n",
				keyType, i+1, float64(*messages)/d.Seconds(), rig.Ms(c)/float64(*messages), s, p, cores)
		}
		s, p := measureRaw(op, *rawTime, cores)
		single = (single + s) / float64(*rounds+1)
		parallel = (parallel + p) / float64(*rounds+1)
		rawRates[keyType] = single

		if bad, err := sink.Bad(); bad > 0 {
			h.Fatalf("%s: %d of %d messages were not opened; first: %v", keyType, bad, sink.Count(), err)
		}
		if dec := gw.MustMetric(h, `smimegate_decisions_total{action="decrypt"}`); int(dec) != sink.Count() {
			h.Fatalf("%s: the gateway decrypted %v messages, the sink holds %d", keyType, dec, sink.Count())
		}
		gw.Stop()

		rate := float64(*messages**rounds) / gwTime.Seconds()
		limit := single * float64(cores)
		ratio := rate / limit
		line := fmt.Sprintf("decrypt %-15s %7.1f msg/s  raw %8.1f ops/s x %d cores = %8.1f (all cores at once: %8.1f)  ratio %.3f",
			keyType, rate, single, cores, limit, parallel, ratio)
		if keyType == "rsa2048" {
			line += fmt.Sprintf("  (target >= 0.8: %s)", rig.Verdict(ratio, 0.8, false))
		}
		perMsg := rig.Ms(gwCPU) / float64(*messages**rounds)
		line += fmt.Sprintf("\ndecrypt %-15s gateway CPU %.2f ms/msg, of which the private-key operation %.2f ms (%.0f %%)",
			keyType, perMsg, 1000/single, 100*(1000/single)/perMsg)
		// The bound this machine sets: all cores for the gateway alone, the
		// load generator and the sink (which share them here) for free.
		best := float64(cores) * 1000 / perMsg
		line += fmt.Sprintf("\ndecrypt %-15s at that CPU per message, %d cores allow at most %.1f msg/s even with the load generator and the sink elsewhere: ratio %.3f",
			keyType, cores, best, best/limit)
		lines = append(lines, line)
	}
	if ref := rawRates["rsa2048"]; ref > 0 {
		for _, k := range keyList {
			k = strings.TrimSpace(k)
			if r, ok := rawRates[k]; ok && k != "rsa2048" {
				lines = append(lines, fmt.Sprintf("decrypt %-15s private operation %8.1f ops/s on one core, RSA-2048's %8.1f: %.1f times as fast", k, r, ref, r/ref))
			}
		}
	}
	fmt.Println()
	for _, l := range lines {
		fmt.Println(l)
	}
}

// cpuTime returns the CPU time the gateway process has used so far.
func cpuTime(h *rig.Harness, gw *rig.Gateway) time.Duration {
	d, err := rig.CPUTime(gw.PID())
	if err != nil {
		h.Fatalf("%v", err)
	}
	return d
}

// sealed makes n messages encrypted to cert, as a partner's gateway sends
// them, each with the marker that mustBeOpened looks for.
func sealed(h *rig.Harness, cert *x509.Certificate, n, size int) []rig.Job {
	jobs := make([]rig.Job, n)
	for i := range jobs {
		msg := rig.Message("alice@example.org", "bob@example.net", marker, size)
		msg = append(msg, make([]byte, smime.SealSpare)...)[:len(msg)]
		var out bytes.Buffer
		err := smime.Seal(&out, msg, smime.SealOptions{
			Recipients: []cms.Recipient{{Cert: cert}},
			Cipher:     cms.AES256GCM,
		})
		if err != nil {
			h.Fatalf("sealing a test message: %v", err)
		}
		jobs[i] = rig.Job{From: "alice@example.org", To: []string{"bob@example.net"}, Data: out.Bytes()}
	}
	return jobs
}

const marker = "opened-by-the-gateway"

func mustBeOpened(_ string, data []byte) error {
	if rig.IsSMIME(data) || !bytes.Contains(data, []byte("X-Bench-Marker: "+marker)) {
		return fmt.Errorf("arrived without the marker from inside the encryption")
	}
	return nil
}

// run sends jobs and returns the time until the sink holds all of them.
func run(h *rig.Harness, addr string, sink *rig.Sink, sessions int, jobs []rig.Job) time.Duration {
	want := sink.Count() + len(jobs)
	start := time.Now()
	if err := rig.SendAll(addr, sessions, jobs); err != nil {
		h.Fatalf("%v", err)
	}
	end, err := sink.WaitCount(want, 5*time.Minute)
	if err != nil {
		h.Fatalf("%s: %v", addr, err)
	}
	return end.Sub(start)
}

// loadKeyPair reads the key and certificate that keygen wrote as the
// gateway does, through the certificate store, which reads every key type
// (crypto/x509 reads no KEM keys).
func loadKeyPair(h *rig.Harness, k rig.KeyFiles) (*x509.Certificate, any) {
	s, err := certstore.Load(certstore.Options{OwnDir: filepath.Dir(k.Key)})
	if err != nil {
		h.Fatalf("%v", err)
	}
	own := s.Own()
	if len(own) != 1 || own[0].Key == nil {
		h.Fatalf("%s: want one own certificate with its key, have %d: %v", filepath.Dir(k.Key), len(own), s.Problems())
	}
	return own[0].X509, own[0].Key
}

// rawOp returns one private-key operation of the kind the inbound path does
// once per message.
func rawOp(h *rig.Harness, priv any) func() {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		cek := make([]byte, 32)
		_, _ = rand.Read(cek)
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, &k.PublicKey, cek)
		if err != nil {
			h.Fatalf("%v", err)
		}
		return func() {
			out := make([]byte, 32)
			if err := rsa.DecryptPKCS1v15SessionKey(nil, k, ct, out); err != nil {
				panic(err)
			}
		}
	case *ecdsa.PrivateKey:
		ek, err := k.ECDH()
		if err != nil {
			h.Fatalf("%v", err)
		}
		eph, err := ek.Curve().GenerateKey(rand.Reader)
		if err != nil {
			h.Fatalf("%v", err)
		}
		pub := eph.PublicKey()
		return func() {
			if _, err := ek.ECDH(pub); err != nil {
				panic(err)
			}
		}
	case *cms.KEMPrivateKey:
		_, ct, err := k.Public().(*cms.KEMPublicKey).Encapsulate()
		if err != nil {
			h.Fatalf("%v", err)
		}
		return func() {
			if _, err := k.Decapsulate(ct); err != nil {
				panic(err)
			}
		}
	case *ecdh.PrivateKey:
		eph, err := k.Curve().GenerateKey(rand.Reader)
		if err != nil {
			h.Fatalf("%v", err)
		}
		pub := eph.PublicKey()
		return func() {
			if _, err := k.ECDH(pub); err != nil {
				panic(err)
			}
		}
	}
	h.Fatalf("no raw operation for a %T key", priv)
	return nil
}

// measureRaw runs op for d on one goroutine, then for d on cores goroutines,
// and returns both rates.
func measureRaw(op func(), d time.Duration, cores int) (single, parallel float64) {
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		op()
		n++
	}
	single = float64(n) / time.Since(start).Seconds()

	var total atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	for range cores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				op()
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	parallel = float64(total.Load()) / time.Since(start).Seconds()
	return single, parallel
}
