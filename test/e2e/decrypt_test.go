package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// headerFields splits msg into its header fields, each raw with its
// continuation lines and CRLF, and the rest (the empty line and the body).
func headerFields(msg []byte) (fields [][]byte, rest []byte) {
	for len(msg) > 0 && !bytes.HasPrefix(msg, []byte("\r\n")) {
		end := 0
		for {
			i := bytes.Index(msg[end:], []byte("\r\n"))
			if i < 0 {
				return append(fields, msg), nil
			}
			end += i + 2
			if end >= len(msg) || (msg[end] != ' ' && msg[end] != '\t') {
				break
			}
		}
		fields = append(fields, msg[:end])
		msg = msg[end:]
	}
	return fields, msg
}

// decryptCmd runs the built binary's `smimegate decrypt` with g's
// configuration on sealed, as an operator would on a stopped or a running
// gateway's host.
func decryptCmd(t *testing.T, g *gateway, sender string, sealed []byte) ([]byte, string, error) {
	t.Helper()
	cmd := exec.Command(bin, "decrypt", "-config", g.cfgPath, "-sender", sender)
	cmd.Stdin = bytes.NewReader(sealed)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.Bytes(), stderr.String(), err
}

// TestDecryptCommandIsTheGatewaysInboundStep: the built binary's `smimegate
// decrypt` writes what a running gateway relays inward for the same sealed
// message, field for field and byte for byte: the Authentication-Results and
// Smimegate-Decrypted fields, the outer trace and the original. Only two
// fields differ, and by nature: our "decrypted" Received field names a queue
// id and a time, and the running gateway's receiver added its own Received
// field when the message came in over SMTP, which an offline command never
// receives. A message the gateway quarantines, the command refuses with the
// same reason.
func TestDecryptCommandIsTheGatewaysInboundStep(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: orgInner.Addr})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	msg := message("alice@example.org", "bob@example.net", "Offline and online")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	sealed := waitMessages(t, transit, 1)[0].Data

	mustSend(t, netgw.smtp, "alice@example.org", []string{"bob@example.net"}, string(sealed))
	relayed := waitMessages(t, bob, 1)[0].Data
	offline, stderr, err := decryptCmd(t, netgw, "alice@example.org", sealed)
	if err != nil {
		t.Fatalf("smimegate decrypt: %v\n%s", err, stderr)
	}

	rf, rbody := headerFields(relayed)
	of, obody := headerFields(offline)
	if len(rf) == 0 || len(of) == 0 || !bytes.HasPrefix(rf[0], []byte("Received: by gw.example.net (smimegate, decrypted)")) || !bytes.HasPrefix(of[0], []byte("Received: by gw.example.net (smimegate, decrypted)")) {
		t.Fatalf("both copies must start with our decrypted Received field:\nrelayed %.200q\noffline %.200q", relayed, offline)
	}
	// The running gateway's receiver field: "Received: from ... by
	// gw.example.net ...", after our verdict fields and before the outer
	// trace. The offline command has no receipt, hence no such field.
	var kept [][]byte
	receipt := 0
	for _, f := range rf[1:] {
		if bytes.HasPrefix(f, []byte("Received: from")) && bytes.Contains(f, []byte("by gw.example.net")) {
			receipt++
			continue
		}
		kept = append(kept, f)
	}
	if receipt != 1 {
		t.Fatalf("the relayed copy has %d receipt fields of gw.example.net, want 1:\n%s", receipt, bytes.Join(rf, nil))
	}
	if len(kept) != len(of)-1 {
		t.Fatalf("the relayed copy has %d header fields besides ours, the offline one %d:\nrelayed:\n%s\noffline:\n%s", len(kept), len(of)-1, bytes.Join(kept, nil), bytes.Join(of[1:], nil))
	}
	for i, f := range kept {
		if !bytes.Equal(f, of[i+1]) {
			t.Errorf("header field %d differs:\nrelayed %q\noffline %q", i+1, f, of[i+1])
		}
	}
	if !bytes.Equal(rbody, obody) {
		t.Errorf("the bodies differ:\nrelayed %q\noffline %q", rbody, obody)
	}
	for _, name := range []string{"Authentication-Results: gw.example.net", "Smimegate-Decrypted:"} {
		if !bytes.Contains(offline, []byte(name)) {
			t.Errorf("the offline copy lacks %s", name)
		}
	}

	// Tampered ciphertext (a base64 character near the end of the
	// payload: the encrypted content or its authentication tag): the
	// gateway quarantines it, and the command refuses it with the same
	// reason.
	fields, body := headerFields(sealed)
	j := bytes.LastIndex(body, []byte("\r\n"))
	for j > 0 && !isBase64Char(body[j]) {
		j--
	}
	j -= 8
	if j < 0 {
		t.Fatalf("sealed body too short: %q", body)
	}
	tampered := bytes.Clone(body)
	if tampered[j] == 'A' {
		tampered[j] = 'B'
	} else {
		tampered[j] = 'A'
	}
	bad := append(bytes.Join(fields, nil), tampered...)
	mustSend(t, netgw.smtp, "alice@example.org", []string{"bob@example.net"}, string(bad))
	q := netgw.waitQuarantined(1)
	_, stderr, err = decryptCmd(t, netgw, "alice@example.org", bad)
	if err == nil {
		t.Fatal("smimegate decrypt wrote a copy of a message the gateway quarantined")
	}
	reason := strings.TrimPrefix(q[0].Reason, "cannot decrypt: ")
	t.Logf("the gateway quarantined the tampered copy: %s", q[0].Reason)
	if !strings.Contains(stderr, "the gateway would quarantine it") || !strings.Contains(stderr, reason) {
		t.Errorf("smimegate decrypt does not give the gateway's reason %q:\n%s", reason, stderr)
	}
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}
