package smtpd

import (
	"os/exec"
	"testing"
)

// TestSMTPSource loads the receiver with Postfix's smtp-source, an
// independent client implementation: 20 parallel sessions, 200 messages of
// 10 KB, all of which must be queued whole.
func TestSMTPSource(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("smtp-source"); err != nil {
		t.Skip("smtp-source (Postfix) is not installed")
	}
	h := newHarness(t, "", Options{})
	out, err := exec.Command("smtp-source", "-s", "20", "-m", "200", "-l", "10240", "-f", "a@example.net", "-t", "b@example.org", h.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	list := h.queued()
	if len(list) != 200 {
		t.Fatalf("%d messages queued, want 200\n%s", len(list), out)
	}
	for _, env := range list {
		if env.Size < 10240 {
			t.Fatalf("message %s has %d bytes, want at least 10240", env.ID, env.Size)
		}
	}
}
