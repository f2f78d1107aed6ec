package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKeygenAsRootLeavesKeysTheServiceReads: keygen run as root into a
// directory of the service's group (root:smimegate 0750, as the Debian
// package makes /etc/smimegate/own) writes the key 0640 root:GROUP, which a
// process of that group reads, and the store loads it without a
// permission problem; into a directory of root's group it stays 0600.
func TestKeygenAsRootLeavesKeysTheServiceReads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: keygen as root is what is tested")
	}
	const nogroup = 65534 // Debian's nogroup, the stand-in for smimegate's group
	// Not t.TempDir: its parent is private to root, and the group must
	// reach the key.
	base, err := os.MkdirTemp("", "keyowner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, 0, nogroup); err != nil {
		t.Fatal(err)
	}
	var e bytes.Buffer
	if code := run([]string{"keygen", "-domain", "example.org", "-key", "p256", "-out", own}, &e); code != 0 {
		t.Fatalf("keygen: %d %s", code, e.String())
	}
	key := filepath.Join(own, "example.org.key")
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != nogroup {
		t.Fatalf("key %04o %d:%d, want 0640 root:%d", fi.Mode().Perm(), st.Uid, st.Gid, nogroup)
	}
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "cat", key)
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "PRIVATE KEY") {
			t.Errorf("a process of the group cannot read the key: %v", err)
		}
	}
	cfg := filepath.Join(base, "smimegate.toml")
	if err := os.WriteFile(cfg, []byte("local_domains = [\"example.org\"]\nstate_dir = \"state\"\n[relay]\ninbound = \"127.0.0.1:25\"\n[certs]\nown = \"own\"\npartners = \"own\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := certCommand([]string{"list", "-config", cfg}, &out, &out); err != nil || strings.Contains(out.String(), "private key but") {
		t.Errorf("cert list: %v\n%s", err, out.String())
	}

	rootDir := filepath.Join(base, "rootown")
	if code := run([]string{"keygen", "-domain", "example.net", "-key", "p256", "-out", rootDir}, &e); code != 0 {
		t.Fatalf("keygen: %d %s", code, e.String())
	}
	if fi, _ := os.Stat(filepath.Join(rootDir, "example.net.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("a key in root's directory is %04o, want 0600", fi.Mode().Perm())
	}
}
