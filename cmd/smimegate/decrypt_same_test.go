package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/gateway"
	"smimegate/internal/spool"
)

// TestDecryptIsTheGatewaysInboundStep: `smimegate decrypt` does what the
// gateway's inbound step does with the same message and envelope sender:
// byte for byte the same copy (our Received field, our verdict, the outer
// trace fields, the message, forged fields of ours removed) when it opens,
// and the same refusal when the gateway would quarantine or pass it. The
// inputs are the hostile ones of internal/smime's tests and a sender rule
// (require_aead keyed on the envelope sender) that the command used to
// miss because it looked at From alone.
func TestDecryptIsTheGatewaysInboundStep(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "[policy.partners.\"strict.example\"]\nrequire_aead = true\n")
	cfgPath := filepath.Join(dir, "smimegate.toml")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	store, err := loadStore(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(pt string, args ...string) []byte {
		return cryptTestOpenSSL(t, []byte(pt), append(append([]string{"cms", "-encrypt", "-binary"}, args...), cryptTestdata("rsa.crt"))...)
	}
	const hdr = "From: alice@example.org\r\nTo: bob@example.net\r\n\r\n"
	trace := "Received: from partner.example.net ([192.0.2.7]) by gw.example.org; Tue, 1 Dec 2026 10:00:00 +0000\r\nReturn-Path: <alice@example.net>\r\n"
	gcm := enc(cryptMsg, "-aes-256-gcm")
	fuzzed, err := os.ReadFile(filepath.Join("..", "..", "internal", "smime", "testdata", "fuzz", "FuzzOpen", "19c271b82decfedc"))
	if err != nil {
		t.Fatal(err)
	}
	_, quoted, _ := strings.Cut(string(fuzzed), "[]byte(")
	fuzzMsg, err := strconv.Unquote(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(quoted), ")")))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, sender string
		msg          []byte
	}{
		{"gcm", "", gcm},
		{"gcm with trace fields", "alice@example.net", append([]byte(trace), gcm...)},
		{"cbc", "", enc(cryptMsg, "-aes-256-cbc")},
		{"cbc, the envelope sender requires AEAD", "x@strict.example", enc(cryptMsg, "-aes-256-cbc")},
		{"cbc, From requires AEAD", "", enc("From: a@strict.example\r\n\r\nhi\r\n", "-aes-256-cbc")},
		{"3des not allowed", "", enc(cryptMsg, "-des3")},
		{"tampered tag", "", cryptTestTamper(t, gcm)},
		{"smuggled second message", "", enc(hdr+"hi\r\n\r.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n", "-aes-256-gcm")},
		{"NUL", "", enc(hdr+"hi\x00\r\n", "-aes-256-gcm")},
		{"LF only", "", enc("From: alice@example.org\nTo: bob@example.net\n\nhi\n.\n", "-aes-256-gcm")},
		{"no final line end", "", enc(hdr+"hi", "-aes-256-gcm")},
		{"forged fields of ours inside", "", enc("Authentication-Results: "+cfg.Hostname+"; smime=pass\r\nSmimegate-Decrypted: "+cfg.Hostname+"; cert-sha256=00\r\n"+hdr+"hi\r\n", "-aes-256-gcm")},
		{"garbage", "", []byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n")},
		{"bad base64", "", []byte("Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIA*\r\n")},
		{"truncated signed-data", "", []byte("Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n")},
		{"fuzz corpus entry", "", []byte(fuzzMsg)},
		{"to another key", "", cryptTestOpenSSL(t, []byte(cryptMsg), "cms", "-encrypt", "-binary", "-aes-256-gcm", cryptTestdata("other.crt"))},
		{"plain", "", []byte(cryptMsg)},
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const id = "0123456789abcdefghij"
	opened := 0
	for _, c := range cases {
		want := gateway.OpenInbound(cfg, store, &spool.Envelope{ID: id, Sender: c.sender}, bytes.Clone(c.msg), now)
		var wantOut bytes.Buffer
		if want.Ready() {
			opened++
			if _, err := want.WriteTo(&wantOut); err != nil {
				t.Fatal(err)
			}
		}
		args := []string{"-config", cfgPath}
		if c.sender != "" {
			args = append(args, "-sender", c.sender)
		}
		var out, errOut bytes.Buffer
		err := decryptAt(args, bytes.NewReader(c.msg), &out, &errOut, func() time.Time { return now }, func() string { return id })
		if !bytes.Equal(out.Bytes(), wantOut.Bytes()) {
			t.Errorf("%s: decrypt wrote\n%q\nthe gateway's copy is\n%q", c.name, out.Bytes(), wantOut.Bytes())
		}
		switch {
		case want.Ready() && err != nil:
			t.Errorf("%s: decrypt failed (%v) where the gateway relays the copy", c.name, err)
		case !want.Ready() && err == nil:
			t.Errorf("%s: decrypt succeeded where the gateway does not relay a copy (%v, %q)", c.name, want.Outcome, want.Quarantine)
		case want.Quarantine != "" && !strings.Contains(err.Error(), strings.TrimPrefix(want.Quarantine, "cannot decrypt: ")):
			t.Errorf("%s: decrypt says %q, the gateway's quarantine reason is %q", c.name, err, want.Quarantine)
		}
	}
	if opened < 5 {
		t.Errorf("only %d of the inputs opened: the comparison says little", opened)
	}
}
