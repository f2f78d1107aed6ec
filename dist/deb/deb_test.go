package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackage builds the package and reads it back with Debian's own
// dpkg-deb: its name, control fields, conffiles, maintainer scripts, and
// every path with its owner and mode. Installing it is .ci/run's
// dist/deb/install-test.sh, which changes the machine.
func TestPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dpkg-deb is missing, and CI checks the package")
		}
		t.Skip("dpkg-deb is missing (not a Debian machine)")
	}
	out := t.TempDir()
	deb, err := build("1.2.3", out, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(deb) != "smimegate_1.2.3_amd64.deb" {
		t.Errorf("package file %s", filepath.Base(deb))
	}
	dpkg := func(args ...string) string {
		t.Helper()
		b, err := exec.Command("dpkg-deb", append(args, deb)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	for field, want := range map[string]string{"Package": "smimegate", "Version": "1.2.3", "Architecture": "amd64", "Depends": "adduser", "Section": "mail"} {
		b, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
		if got := strings.TrimSpace(string(b)); err != nil || got != want {
			t.Errorf("%s: %q (%v), want %q", field, got, err, want)
		}
	}
	ctrl := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, b)
	}
	conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/smimegate/smimegate.toml" {
		t.Errorf("conffiles: %q", conffiles)
	}
	postinst, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	for _, want := range []string{"adduser --system --group", "/etc/smimegate/own root smimegate 0750", "/var/lib/smimegate smimegate smimegate 0700", "/etc/smimegate/smimegate.toml root smimegate 0640"} {
		if !strings.Contains(string(postinst), want) {
			t.Errorf("postinst lacks %q", want)
		}
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(ctrl, script)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: %v, mode %v", script, err, fi.Mode())
		}
		if b, err := exec.Command("sh", "-n", filepath.Join(ctrl, script)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", script, err, b)
		}
	}
	contents := dpkg("-c")
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/bin/smimegate",
		"drwxr-x--- root/root         0", "./etc/smimegate/own/",
		"-rw-r----- root/root", "./etc/smimegate/smimegate.toml",
		"drwx------ root/root         0", "./var/lib/smimegate/",
		"./lib/systemd/system/smimegate.service",
		"./usr/share/smimegate/prometheus/smimegate.rules.yml",
		"./usr/share/smimegate/grafana/smimegate.json",
		"./usr/share/doc/smimegate/operator.md",
	} {
		if !strings.Contains(contents, want) {
			t.Errorf("contents lack %q:\n%s", want, contents)
		}
	}
	unit := filepath.Join(t.TempDir(), "x")
	if b, err := exec.Command("dpkg-deb", "-x", deb, unit).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	svc, _ := os.ReadFile(filepath.Join(unit, "lib/systemd/system/smimegate.service"))
	if !strings.Contains(string(svc), "ExecStart=/usr/bin/smimegate serve -config /etc/smimegate/smimegate.toml") || !strings.Contains(string(svc), "User=smimegate") {
		t.Error("the unit does not run /usr/bin/smimegate as smimegate")
	}
	if _, err := build("v1.0", out, "amd64"); err == nil {
		t.Error("a version that is not Debian's was accepted")
	}
}
