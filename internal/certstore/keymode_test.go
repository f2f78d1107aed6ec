package certstore

import (
	"os"
	"strings"
	"testing"
)

// TestKeyModeGroupRead: a key the service's group may read (0640, the
// layout of dist/smimegate.service and the Debian package) loads without a
// problem; one its group may write, or others may read, is reported.
func TestKeyModeGroupRead(t *testing.T) {
	t.Parallel()
	for mode, want := range map[os.FileMode]string{0o600: "", 0o640: "", 0o400: "", 0o440: "",
		0o660: "its group may change it", 0o644: "readable by others", 0o604: "readable by others", 0o641: "readable by others"} {
		own, partners := testDirs(t)
		k := rsaKey(t, 5)
		p := writeFile(t, own, "o.pem", append(certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}})), keyPEM(t, k)...))
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
		got := problemsText(s)
		if len(s.Own()) != 1 || s.Own()[0].Key == nil {
			t.Errorf("mode %04o: the key did not load", mode)
		}
		if want == "" && strings.Contains(got, "private key") || want != "" && !strings.Contains(got, want) {
			t.Errorf("mode %04o: problems %q, want %q", mode, got, want)
		}
	}
}
