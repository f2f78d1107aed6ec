package smtpd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskFull puts the spool on a small tmpfs and fills it: every message
// that does not fit must get 452 4.3.1 (try later), never a 250, and the
// receiver must accept again once there is room. Mounting needs root; the
// test is skipped without it.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	h := newHarnessIn(t, dir, "", Options{})
	c := h.session(trustedIP)
	body := "Subject: filler\r\n\r\n" + strings.Repeat(strings.Repeat("f", 78)+"\r\n", 400) // 32 KB
	accepted, full := 0, 0
	for i := 0; i < 20 && full < 3; i++ {
		code, msg := sendData(c, body)
		switch {
		case code == 250:
			accepted++
		case code == 452 && strings.HasPrefix(msg, "4.3.1"):
			full++
		default:
			t.Fatalf("message %d: %d %s", i, code, msg)
		}
	}
	if accepted == 0 || full == 0 {
		t.Fatalf("accepted %d, refused for lack of space %d: the disk never filled", accepted, full)
	}
	list := h.queued()
	if len(list) != accepted {
		t.Fatalf("%d messages got a 250, %d are queued", accepted, len(list))
	}
	for _, env := range list {
		data, err := h.sp.ReadData(env.ID, "")
		if err != nil || int64(len(data)) != env.Size {
			t.Fatalf("queued message %s is incomplete: %d bytes of %d, %v", env.ID, len(data), env.Size, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("refused messages left %d files in tmp/", len(tmp))
	}
	// Make room: the next message is accepted on the same session.
	for _, env := range list {
		h.sp.Remove(env.ID)
	}
	if code, msg := sendData(c, body); code != 250 {
		t.Fatalf("after making room: %d %s", code, msg)
	}
}
