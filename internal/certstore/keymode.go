package certstore

import (
	"fmt"
	"io/fs"
)

// keyModeProblem says what is wrong with the mode of a file that holds a
// private key, "" if nothing. Others may have no access at all. The group
// may read, not write: the layout of dist/smimegate.service and of the
// Debian package keeps keys root:smimegate 0640, so that the service reads
// them and cannot change them, as Debian's ssl-cert group does for TLS keys
// (/etc/ssl/private). A group that anyone else belongs to is the
// operator's choice, as it is for ssl-cert.
func keyModeProblem(perm fs.FileMode) string {
	switch {
	case perm&0o007 != 0:
		return fmt.Sprintf("holds a private key but is readable by others (mode %04o): chmod 640 (group of the service) or 600", perm)
	case perm&0o030 != 0:
		return fmt.Sprintf("holds a private key but its group may change it (mode %04o): chmod 640 or 600", perm)
	}
	return ""
}
