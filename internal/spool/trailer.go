package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// The original of a message is committed as one file: the message bytes,
// then the envelope as JSON (the trailer), then a fixed-size footer of the
// JSON's length (8 bytes, big-endian) and a magic string. One file means one
// inode to create, one fsync and one rename per received message; the
// footer at the end lets a reader find the boundary without scanning.
const (
	footerMagic = "SMGENV01"
	footerSize  = 8 + len(footerMagic)
)

// errNoFooter says that a file does not end in a valid footer: a torn write,
// or a data file written before trailers existed.
var errNoFooter = errors.New("no valid envelope trailer at the end of the file")

// appendFooter appends the footer for a trailer of n bytes to b.
func appendFooter(b []byte, n int) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	return append(b, footerMagic...)
}

// parseFooter reads the footer of a file of size bytes and returns the
// length of the message data and of the JSON trailer that precedes the
// footer. Damage (a short file, a wrong magic, a length that does not fit
// the file) is errNoFooter, never a panic.
func parseFooter(r io.ReaderAt, size int64) (dataLen, jsonLen int64, err error) {
	if size < int64(footerSize) {
		return 0, 0, errNoFooter
	}
	var foot [footerSize]byte
	if _, err := r.ReadAt(foot[:], size-int64(footerSize)); err != nil {
		return 0, 0, fmt.Errorf("reading the footer: %w", err)
	}
	if string(foot[8:]) != footerMagic {
		return 0, 0, errNoFooter
	}
	n := binary.BigEndian.Uint64(foot[:8])
	if n > uint64(size-int64(footerSize)) {
		return 0, 0, fmt.Errorf("%w: the trailer would have %d bytes, the file has %d", errNoFooter, n, size)
	}
	return size - int64(footerSize) - int64(n), int64(n), nil
}

// parseTrailer returns the length of the message data and the envelope
// JSON of a file of size bytes that ends in a trailer and a footer.
func parseTrailer(r io.ReaderAt, size int64) (dataLen int64, envJSON []byte, err error) {
	dataLen, jsonLen, err := parseFooter(r, size)
	if err != nil {
		return 0, nil, err
	}
	envJSON = make([]byte, jsonLen)
	if _, err := r.ReadAt(envJSON, dataLen); err != nil {
		return 0, nil, fmt.Errorf("reading the trailer: %w", err)
	}
	return dataLen, envJSON, nil
}

// decodeTrailer checks the trailer of the original of message id (a file
// of size bytes) and returns its envelope. The envelope must name the id
// and the size of the data before it, so that a file copied under another
// name or cut short is not taken for a message.
func decodeTrailer(r io.ReaderAt, size int64, id string) (*Envelope, error) {
	dataLen, b, err := parseTrailer(r, size)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("envelope trailer: %w", err)
	}
	if env.ID != id {
		return nil, fmt.Errorf("envelope trailer names id %q", env.ID)
	}
	if env.Size != dataLen {
		return nil, fmt.Errorf("the original message has %d bytes, its envelope trailer says %d", dataLen, env.Size)
	}
	return env, nil
}

// readTrailerEnvelope returns the envelope in the trailer of dir/ID.msg.
func readTrailerEnvelope(dir, id string) (*Envelope, error) {
	f, err := os.Open(filepath.Join(dir, dataName(id, "")))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("spool: message %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	env, err := decodeTrailer(f, st.Size(), id)
	if err != nil {
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	return env, nil
}

// dataLength returns how many bytes of an original are the message: all
// of it before the trailer, or the whole file if it has no footer (an
// original written before trailers existed, whose envelope is in ID.json).
func dataLength(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	n, _, err := parseFooter(f, st.Size())
	if errors.Is(err, errNoFooter) {
		return st.Size(), nil
	}
	return n, err
}

// Data is an open data file of a queued message. Reads see only the
// message bytes, never the envelope trailer of an original.
type Data struct {
	*io.SectionReader
	f *os.File
}

// Close closes the underlying file.
func (d *Data) Close() error { return d.f.Close() }

// openData opens dir/ID[.data].msg as a Data.
func openData(dir, id, data string) (*Data, error) {
	f, err := os.Open(filepath.Join(dir, dataName(id, data)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("spool: data %q of message %s: %w", data, id, ErrNotFound)
		}
		return nil, fmt.Errorf("spool: data %q of message %s: %w", data, id, err)
	}
	var n int64
	if data == "" {
		n, err = dataLength(f)
	} else {
		// Versions are plain files without a trailer.
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			n = st.Size()
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: data %q of message %s: %w", data, id, err)
	}
	return &Data{SectionReader: io.NewSectionReader(f, 0, n), f: f}, nil
}

// readAll reads all of d into a buffer of its size.
func readAll(d *Data) ([]byte, error) {
	buf := make([]byte, d.Size())
	if _, err := io.ReadFull(d, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
