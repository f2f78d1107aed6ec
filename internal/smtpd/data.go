package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// dataLimits bounds one message.
type dataLimits struct {
	maxBytes    int64 // message size after dot-unstuffing, CRLFs included
	maxLine     int   // longest line, CRLF excluded
	maxHeader   int   // header section, up to the empty line
	maxReceived int   // Received fields before we call it a loop
}

// dataReject is a reason to refuse a message found while reading it. The
// reader keeps reading to the real end of the DATA stream after finding one,
// so the dialogue stays in step and nothing of the refused message is ever
// read as a command.
type dataReject struct {
	code     int
	enhanced [3]int
	msg      string
}

func (r *dataReject) Error() string { return r.msg }

var (
	errBareNewline = &dataReject{550, [3]int{5, 6, 0}, "Message refused: bare CR or LF in DATA; lines must end with CRLF (RFC 5321 section 2.3.8)"}
	errLoop        = &dataReject{554, [3]int{5, 4, 6}, "Message refused: too many Received header fields, probably a mail loop (RFC 5321 section 6.3)"}
)

// nulRefusal begins the reply to a message with a NUL in it.
const nulRefusal = "Message refused: NUL character"

// nulInData refuses a message with a NUL octet. RFC 5322 section 2.3 and
// the text rule of section 3.5 leave NUL out of a message (only the
// obsolete syntax of section 4.1 has it), and 8BITMIME (RFC 6152) carries
// RFC 2045 section 2.8's 8bit data, in which "no NULs are allowed". A NUL
// relayed on is read differently by the next MTA, and by the mail client
// behind it, than by us: C string handling ends a line or a header there.
// offset is the first NUL's position in the DATA stream, counted from the
// first byte after the DATA command's CRLF.
func nulInData(offset int64) *dataReject {
	return &dataReject{550, [3]int{5, 6, 0}, fmt.Sprintf("%s at byte %d of the DATA stream; message content may contain none (RFC 5322 section 2.3, RFC 6152)", nulRefusal, offset)}
}

func tooBig(limit int64) *dataReject {
	return &dataReject{552, [3]int{5, 3, 4}, fmt.Sprintf("Message refused: larger than the limit of %d bytes", limit)}
}

func lineTooLong(limit int) *dataReject {
	return &dataReject{550, [3]int{5, 6, 0}, fmt.Sprintf("Message refused: a line is longer than %d bytes", limit)}
}

func headerTooBig(limit int) *dataReject {
	return &dataReject{552, [3]int{5, 3, 4}, fmt.Sprintf("Message refused: header section larger than %d bytes", limit)}
}

// dataReader reads the DATA stream of RFC 5321 section 4.1.1.4 strictly:
// every line ends in CRLF, a CR or LF anywhere else is an error, so is a
// NUL, a leading dot is removed (section 4.5.2), and only a line consisting
// of a single dot, after a CRLF, ends the message. This is what defeats
// SMTP smuggling (CVE-2023-51764): \n.\r\n, \r\n.\n, \r.\r and their kin
// neither end the message nor pass into it.
type dataReader struct {
	br  *bufio.Reader
	dst io.Writer
	lim dataLimits
	// beforeFill is called before a read may block on the network, with the
	// bytes read so far, so the caller can move the read deadline.
	beforeFill func(total int64) error

	total    int64 // bytes read from the network
	size     int64 // message bytes after unstuffing
	inHeader bool
	header   int
	received int
	reject   *dataReject
	werr     error // first error writing to dst
}

// errDataTerminated is never returned; the loop stops at the terminator.

// readData reads one message up to and including the terminating
// CRLF.CRLF, writing the unstuffed message (with CRLF line ends) to dst.
// It returns a *dataReject if the message must be refused, the error of dst
// if writing failed, or the network error that cut the stream short.
func (d *dataReader) readData() (reject *dataReject, writeErr, netErr error) {
	d.inHeader = true
	lineStart := true // the CRLF of the DATA command precedes the first line
	lineLen := 0      // bytes of the current line so far, CRLF excluded
	pendingCR := false
	for {
		if d.beforeFill != nil && d.br.Buffered() == 0 {
			if err := d.beforeFill(d.total); err != nil {
				return d.reject, d.werr, err
			}
		}
		seg, err := d.br.ReadSlice('\n')
		d.total += int64(len(seg))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return d.reject, d.werr, err
		}
		// The terminator has no NUL, so a NUL anywhere in a segment is
		// message content (a ".\x00" line included: it ends nothing).
		if i := bytes.IndexByte(seg, 0); i >= 0 && d.reject == nil {
			d.refuse(nulInData(d.total - int64(len(seg)) + int64(i)))
		}
		complete := err == nil // seg ends with '\n'

		if lineStart && lineLen == 0 && !pendingCR && len(seg) > 0 && seg[0] == '.' {
			if complete && len(seg) == 3 && seg[1] == '\r' {
				return d.reject, d.werr, nil // CRLF.CRLF
			}
			seg = seg[1:] // RFC 5321 section 4.5.2: remove the stuffed dot
		}

		body := seg
		if complete {
			body = seg[:len(seg)-1]
		}
		// A CR held back from the previous segment belongs before body.
		if pendingCR {
			if complete && len(body) == 0 {
				// "\r" then "\n": a proper line end split across segments.
				d.endLine(lineLen, []byte("\r\n"))
				lineStart, lineLen, pendingCR = true, 0, false
				continue
			}
			d.refuse(errBareNewline)
			d.emit([]byte{'\r'})
			lineLen++
			pendingCR = false
		}
		if complete {
			if len(body) > 0 && body[len(body)-1] == '\r' {
				content := body[:len(body)-1]
				if bytes.IndexByte(content, '\r') >= 0 {
					d.refuse(errBareNewline)
				}
				lineLen += len(content)
				d.emitLine(content, lineLen)
				lineStart = true
			} else {
				// A bare LF: not a line end, and what follows is not at the
				// start of a line, so a dot after it ends nothing.
				d.refuse(errBareNewline)
				lineLen += len(body)
				d.emit(seg)
				lineStart = false
			}
			lineLen = 0
			continue
		}
		// A partial line (longer than the read buffer): hold back a final
		// CR, which may be the first half of the CRLF.
		if len(body) > 0 && body[len(body)-1] == '\r' {
			body = body[:len(body)-1]
			pendingCR = true
		}
		if bytes.IndexByte(body, '\r') >= 0 {
			d.refuse(errBareNewline)
		}
		lineLen += len(body)
		if lineLen > d.lim.maxLine {
			d.refuse(lineTooLong(d.lim.maxLine))
		}
		d.countHeader(len(body))
		d.emit(body)
		lineStart = false
	}
}

// emitLine writes a complete line's content plus CRLF and applies the line
// and header rules. lineLen is the whole line's length, of which content is
// the last part.
func (d *dataReader) emitLine(content []byte, lineLen int) {
	if lineLen > d.lim.maxLine {
		d.refuse(lineTooLong(d.lim.maxLine))
	}
	if d.inHeader {
		if lineLen == 0 {
			d.inHeader = false
		} else if len(content) == lineLen && hasPrefixFold(content, "received:") {
			d.received++
			if d.received > d.lim.maxReceived {
				d.refuse(errLoop)
			}
		}
	}
	d.countHeader(len(content) + 2)
	d.emit(content)
	d.emit([]byte("\r\n"))
}

// endLine finishes a line whose CRLF arrived split across two reads.
func (d *dataReader) endLine(lineLen int, crlf []byte) {
	if lineLen > d.lim.maxLine {
		d.refuse(lineTooLong(d.lim.maxLine))
	}
	if d.inHeader && lineLen == 0 {
		d.inHeader = false
	}
	d.countHeader(2)
	d.emit(crlf)
}

func (d *dataReader) countHeader(n int) {
	if !d.inHeader {
		return
	}
	d.header += n
	if d.header > d.lim.maxHeader {
		d.refuse(headerTooBig(d.lim.maxHeader))
	}
}

// refuse records the first reason to refuse the message; from then on
// nothing more is written.
func (d *dataReader) refuse(r *dataReject) {
	if d.reject == nil {
		d.reject = r
	}
}

func (d *dataReader) emit(p []byte) {
	if len(p) == 0 {
		return
	}
	d.size += int64(len(p))
	if d.size > d.lim.maxBytes {
		d.refuse(tooBig(d.lim.maxBytes))
	}
	if d.reject != nil || d.werr != nil {
		return
	}
	if _, err := d.dst.Write(p); err != nil {
		d.werr = err
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}
