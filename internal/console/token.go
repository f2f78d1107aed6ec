package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TokenFile is the name of the admin token in state_dir.
const TokenFile = "admin.token"

// tokenBytes is the size of the token's secret: 256 bits, beyond any
// guessing over a network however fast.
const tokenBytes = 32

// maxTokenFile bounds what is read from the token file: 64 hex digits and a
// line end. A bigger file is not a token and is replaced.
const maxTokenFile = 2*tokenBytes + 2

// TokenStatus says what LoadOrCreateToken found.
type TokenStatus int

const (
	// TokenLoaded: the file was there, private and well formed.
	TokenLoaded TokenStatus = iota
	// TokenCreated: there was no file; a new token was written.
	TokenCreated
	// TokenReplaced: the file could not be trusted (readable by others,
	// another owner, not a regular file, malformed) and was replaced by a
	// new token, so that one that may have leaked no longer opens anything.
	TokenReplaced
)

// LoadOrCreateToken returns the admin token of the gateway whose state_dir
// is dir, making state_dir/admin.token (mode 0600, owned by the calling
// process, which is the spool's owner) at the first start. A file that
// others could have read, or that another user owns, is replaced: the token
// it held is no longer a secret. why says what was wrong with a replaced
// file, for the log.
func LoadOrCreateToken(dir string) (token string, status TokenStatus, why string, err error) {
	path := filepath.Join(dir, TokenFile)
	tok, err := readToken(path, true)
	switch {
	case err == nil:
		return tok, TokenLoaded, "", nil
	case errors.Is(err, fs.ErrNotExist):
		status = TokenCreated
	default:
		var bad *untrustedTokenError
		if !errors.As(err, &bad) {
			return "", 0, "", fmt.Errorf("admin token %s: %w", path, err)
		}
		status, why = TokenReplaced, bad.why
	}
	tok, err = writeToken(path)
	if err != nil {
		return "", 0, "", fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, status, why, nil
}

// ReadToken returns the token of the gateway whose state_dir is dir, for the
// commands that talk to its admin API. It refuses a file that is not
// private to its owner, as the gateway would replace it.
func ReadToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	tok, err := readToken(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist: the gateway makes it at its start; is one running on this state_dir?", path)
	}
	if err != nil {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, nil
}

// untrustedTokenError is a token file that exists but cannot be trusted.
type untrustedTokenError struct{ why string }

func (e *untrustedTokenError) Error() string { return e.why }

// readToken reads and checks the token file. ownerMustBeMe is the gateway's
// check that it owns the file; a command run by root reads the file of
// another owner (it acts as that owner already, see actAsStateDirOwner).
func readToken(path string, ownerMustBeMe bool) (string, error) {
	// O_NOFOLLOW: a symbolic link planted in state_dir must not make the
	// gateway read, or later replace, a file elsewhere.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return "", &untrustedTokenError{"is a symbolic link"}
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", &untrustedTokenError{"is not a regular file"}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", &untrustedTokenError{fmt.Sprintf("is readable or writable by others (mode %04o)", fi.Mode().Perm())}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && ownerMustBeMe && int(st.Uid) != os.Geteuid() {
		return "", &untrustedTokenError{fmt.Sprintf("belongs to uid %d, not to the gateway's uid %d", st.Uid, os.Geteuid())}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", err
	}
	tok, ok := parseToken(data)
	if !ok {
		return "", &untrustedTokenError{"does not hold a token (64 hexadecimal digits)"}
	}
	return tok, nil
}

// parseToken accepts 64 lower-case hex digits and an optional line end.
func parseToken(data []byte) (string, bool) {
	if len(data) > maxTokenFile {
		return "", false
	}
	s := string(data)
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
	}
	if len(s) != 2*tokenBytes {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return s, true
}

// writeToken writes a new token to path: a private temporary file in the
// same directory, fsynced, then renamed over path (which replaces a
// symbolic link rather than following it), then the directory fsynced.
func writeToken(path string) (string, error) {
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+TokenFile+".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	// CreateTemp makes the file 0600 already; Chmod says so whatever the umask.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return tok, d.Sync()
}
