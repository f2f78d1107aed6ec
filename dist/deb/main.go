// Command deb builds smimegate's Debian package, smimegate_VERSION_amd64.deb:
//
//	go run ./dist/deb [-version 0.1.0] [-out DIR]
//
// It builds the binary (static, trimmed paths) and packs it with nfpm
// (github.com/goreleaser/nfpm) beside the systemd unit, the commented
// example configuration as a conffile, the Prometheus rules and the
// Grafana dashboard. The maintainer scripts (postinst.sh, prerm.sh,
// postrm.sh beside this file) make the smimegate system user and give
// /etc/smimegate, its key directory and /var/lib/smimegate their owners
// and modes through dpkg-statoverride, so that dpkg and the operator agree
// on them.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

// defaultVersion is the package version when -version is not given; a
// build from a git checkout appends the commit (0.1.0+git.abc1234), so that
// a later build sorts after an earlier release of the same number only by
// its own version, as Debian compares them.
const defaultVersion = "0.1.0"

// debianVersion is what a Debian upstream version may hold (Debian Policy
// section 5.6.12): it starts with a digit.
var debianVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

func main() {
	version := flag.String("version", "", "package `VERSION` (default "+defaultVersion+", with the git commit when there is one)")
	out := flag.String("out", ".", "`DIR` to write the package into")
	arch := flag.String("arch", "amd64", "Debian `ARCH`itecture (and GOARCH)")
	flag.Parse()
	path, err := build(*version, *out, *arch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist/deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// build makes the package and returns its path.
func build(version, outDir, arch string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if version == "" {
		version = defaultVersion
		if commit, err := gitOutput(root, "rev-parse", "--short=7", "HEAD"); err == nil && commit != "" {
			version += "+git." + commit
		}
	}
	if !debianVersion.MatchString(version) {
		return "", fmt.Errorf("-version %q is not a Debian upstream version (it starts with a digit; letters, digits and .+~- follow)", version)
	}
	work, err := os.MkdirTemp("", "smimegate-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "smimegate")
	goarch := map[string]string{"amd64": "amd64", "arm64": "arm64", "i386": "386", "armhf": "arm"}[arch]
	if goarch == "" {
		return "", fmt.Errorf("-arch %q: no GOARCH for it", arch)
	}
	// CGO_ENABLED=0: one static binary that runs on every Debian release;
	// -trimpath: no path of the build machine in it.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/smimegate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	info := packageInfo(root, bin, version, arch)
	info = nfpm.WithDefaults(info)
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	target := filepath.Join(outDir, pkg.ConventionalFileName(info))
	info.Target = target
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", fmt.Errorf("packing: %w", err)
	}
	return target, f.Close()
}

// packageInfo is the package: what goes where, with which owner and mode.
// Directories that need the service's group get it in postinst (the group
// does not exist when dpkg unpacks a first install).
func packageInfo(root, bin, version, arch string) *nfpm.Info {
	src := func(p string) string { return filepath.Join(root, p) }
	file := func(from, to string, mode os.FileMode) *files.Content {
		return &files.Content{Source: from, Destination: to, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	dir := func(to string, mode os.FileMode) *files.Content {
		return &files.Content{Destination: to, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	conf := file(src("dist/smimegate.toml"), "/etc/smimegate/smimegate.toml", 0o640)
	conf.Type = files.TypeConfigNoReplace
	return &nfpm.Info{
		Name:          "smimegate",
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "mail",
		Priority:      "optional",
		Maintainer:    "smimegate maintainers <smimegate@localhost>",
		Description: "S/MIME domain-encryption mail gateway\n" +
			"smimegate encrypts mail leaving your domains with the domain certificate\n" +
			"of the destination domain and decrypts mail that arrives encrypted to\n" +
			"yours (draft-ramsdell-enc-smime-gateway-00), as an SMTP relay beside\n" +
			"your mail server. It has an operator console in the browser.",
		Homepage: "https://datatracker.ietf.org/doc/html/draft-ramsdell-enc-smime-gateway-00",
		License:  "see /usr/share/doc/smimegate",
		// Reproducible: the files carry the time of the commit, not of the build.
		MTime: commitTime(root),
		Overridables: nfpm.Overridables{
			Depends: []string{"adduser"},
			Contents: files.Contents{
				file(bin, "/usr/bin/smimegate", 0o755),
				file(src("dist/smimegate.service"), "/lib/systemd/system/smimegate.service", 0o644),
				conf,
				dir("/etc/smimegate", 0o750),
				dir("/etc/smimegate/own", 0o750),
				dir("/etc/smimegate/partners", 0o755),
				dir("/var/lib/smimegate", 0o700),
				file(src("dist/prometheus/smimegate.rules.yml"), "/usr/share/smimegate/prometheus/smimegate.rules.yml", 0o644),
				file(src("dist/prometheus/smimegate.rules.test.yml"), "/usr/share/smimegate/prometheus/smimegate.rules.test.yml", 0o644),
				file(src("dist/grafana/smimegate.json"), "/usr/share/smimegate/grafana/smimegate.json", 0o644),
				file(src("README.md"), "/usr/share/doc/smimegate/README.md", 0o644),
				file(src("docs/postfix.md"), "/usr/share/doc/smimegate/postfix.md", 0o644),
				file(src("docs/operator.md"), "/usr/share/doc/smimegate/operator.md", 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: src("dist/deb/postinst.sh"),
				PreRemove:   src("dist/deb/prerm.sh"),
				PostRemove:  src("dist/deb/postrm.sh"),
			},
		},
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run this from inside the smimegate module (go run ./dist/deb)")
	}
	return filepath.Dir(mod), nil
}

func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var b bytes.Buffer
	cmd.Stdout = &b
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// commitTime is the time of HEAD, or of SOURCE_DATE_EPOCH when set, or a
// fixed date outside git: the files' times are then the same in every build
// of the same tree.
func commitTime(root string) time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	if s, err := gitOutput(root, "log", "-1", "--format=%ct"); err == nil {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
}
