package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `smimegate demo` as a newcomer would and checks that it
// succeeds and shows both sides.
func TestDemo(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("smimegate demo: %v\n%s", err, out)
	}
	for _, want := range []string{"application/pkcs7-mime", "What Bob's mail server received", "byte for byte"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(string(out), "must never cross") != 2 {
		t.Errorf("the secret line should appear twice (sent, received), never in transit:\n%s", out)
	}
}
