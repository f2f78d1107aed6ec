package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// serviceKeyGroup says, for keygen run as root, which group a new private
// key in dir must belong to so that the gateway can read it: the group of
// dir when that is not root's (/etc/smimegate/own is root:smimegate 0750
// in the Debian package and in dist/smimegate.service). The key is then
// written 0640 root:GROUP rather than 0600 root:root, which the gateway,
// running as smimegate, could not read. Run as anyone else, or into a
// directory of root's group, keygen writes 0600 as before.
func serviceKeyGroup(dir string) (gid int, name string, ok bool) {
	if os.Geteuid() != 0 {
		return 0, "", false
	}
	st, err := os.Stat(dir)
	if err != nil {
		return 0, "", false
	}
	sys, isUnix := st.Sys().(*syscall.Stat_t)
	if !isUnix || sys.Gid == 0 {
		return 0, "", false
	}
	gid = int(sys.Gid)
	name = strconv.Itoa(gid)
	if g, err := user.LookupGroupId(name); err == nil {
		name = g.Name
	}
	return gid, name, true
}

// giveKeyToGroup makes a key written by root readable by the service's
// group, and nothing more.
func giveKeyToGroup(path string, gid int) error {
	if err := os.Chown(path, 0, gid); err != nil {
		return fmt.Errorf("%s: giving the key to group %d: %w", path, gid, err)
	}
	return os.Chmod(path, 0o640)
}
