package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits bounds one message, whether it comes as DATA or in BDAT chunks.
type Limits struct {
	MaxBytes    int64 // message size after dot-unstuffing, CRLFs included
	MaxLine     int   // longest line, CRLF excluded
	MaxHeader   int   // header section, up to the empty line
	MaxReceived int   // Received fields before the message is taken to loop
}

// The refusals of message content. Each is an *Error the receiver writes as
// it is; the reader keeps reading to the real end of the DATA stream after
// finding one, so the dialogue stays in step and nothing of the refused
// message is ever read as a command.
var (
	ErrBareNewline = &Error{550, EnhancedCode{5, 6, 0}, "Message refused: bare CR or LF in the message; lines must end with CRLF (RFC 5321 section 2.3.8)"}
	ErrLoop        = &Error{554, EnhancedCode{5, 4, 6}, "Message refused: too many Received header fields, probably a mail loop (RFC 5321 section 6.3)"}
)

// NULRefusal begins the reply to a message with a NUL in it.
const NULRefusal = "Message refused: NUL character"

// NULInMessage refuses a message with a NUL octet. RFC 5322 section 2.3
// and the text rule of section 3.5 leave NUL out of a message (only the
// obsolete syntax of section 4.1 has it), and 8BITMIME (RFC 6152) carries
// RFC 2045 section 2.8's 8bit data, in which "no NULs are allowed". A NUL
// relayed on is read differently by the next MTA, and by the mail client
// behind it, than by us: C string handling ends a line or a header there.
// offset is the first NUL's position in the stream (what, "DATA" or
// "BDAT"), counted from its first byte.
func NULInMessage(what string, offset int64) *Error {
	return &Error{550, EnhancedCode{5, 6, 0}, fmt.Sprintf("%s at byte %d of the %s stream; message content may contain none (RFC 5322 section 2.3, RFC 6152)", NULRefusal, offset, what)}
}

// TooBig refuses a message over the size limit (RFC 1870 section 6).
func TooBig(limit int64) *Error {
	return &Error{552, EnhancedCode{5, 3, 4}, fmt.Sprintf("Message refused: larger than the limit of %d bytes", limit)}
}

// LineTooLong refuses a message with a line over the limit (RFC 5321
// section 4.5.3.1.6).
func LineTooLong(limit int) *Error {
	return &Error{550, EnhancedCode{5, 6, 0}, fmt.Sprintf("Message refused: a line is longer than %d bytes", limit)}
}

// HeaderTooBig refuses a message whose header section is over the limit.
func HeaderTooBig(limit int) *Error {
	return &Error{552, EnhancedCode{5, 3, 4}, fmt.Sprintf("Message refused: header section larger than %d bytes", limit)}
}

// DotReader reads the DATA stream of RFC 5321 section 4.1.1.4 strictly:
// every line ends in CRLF, a CR or LF anywhere else is an error, so is a
// NUL, a leading dot is removed (section 4.5.2), and only a line consisting
// of a single dot, after a CRLF, ends the message. This is what defeats
// SMTP smuggling (CVE-2023-51764): \n.\r\n, \r\n.\n, \r.\r and their kin
// neither end the message nor pass into it.
//
// It reads from the connection's own buffer, so that nothing past the
// terminator is consumed: the next command stays there for the command
// loop.
type DotReader struct {
	R   *bufio.Reader
	Dst io.Writer
	Lim Limits
	// BeforeFill is called before a read may block on the network, with the
	// bytes read so far, so the caller can move the read deadline.
	BeforeFill func(total int64) error

	Total    int64 // bytes read from the network
	Size     int64 // message bytes after unstuffing
	inHeader bool
	header   int
	received int
	reject   *Error
	werr     error // first error writing to dst
}

// Read reads one message up to and including the terminating CRLF.CRLF,
// writing the unstuffed message (with CRLF line ends) to Dst. It returns
// the reply refusing the message if it must be refused, the error of Dst
// if writing failed, or the network error that cut the stream short.
func (d *DotReader) Read() (reject *Error, writeErr, netErr error) {
	d.inHeader = true
	lineStart := true // the CRLF of the DATA command precedes the first line
	lineLen := 0      // bytes of the current line so far, CRLF excluded
	pendingCR := false
	for {
		if d.BeforeFill != nil && d.R.Buffered() == 0 {
			if err := d.BeforeFill(d.Total); err != nil {
				return d.reject, d.werr, err
			}
		}
		seg, err := d.R.ReadSlice('\n')
		d.Total += int64(len(seg))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return d.reject, d.werr, err
		}
		// The terminator has no NUL, so a NUL anywhere in a segment is
		// message content (a ".\x00" line included: it ends nothing).
		if i := bytes.IndexByte(seg, 0); i >= 0 && d.reject == nil {
			d.refuse(NULInMessage("DATA", d.Total-int64(len(seg))+int64(i)))
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
				d.endLine(lineLen, crlf)
				lineStart, lineLen, pendingCR = true, 0, false
				continue
			}
			d.refuse(ErrBareNewline)
			d.emit(crlf[:1])
			lineLen++
			pendingCR = false
		}
		if complete {
			if len(body) > 0 && body[len(body)-1] == '\r' {
				content := body[:len(body)-1]
				if bytes.IndexByte(content, '\r') >= 0 {
					d.refuse(ErrBareNewline)
				}
				lineLen += len(content)
				d.emitLine(content, lineLen)
				lineStart = true
			} else {
				// A bare LF: not a line end, and what follows is not at the
				// start of a line, so a dot after it ends nothing.
				d.refuse(ErrBareNewline)
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
			d.refuse(ErrBareNewline)
		}
		lineLen += len(body)
		if lineLen > d.Lim.MaxLine {
			d.refuse(LineTooLong(d.Lim.MaxLine))
		}
		d.countHeader(len(body))
		d.emit(body)
		lineStart = false
	}
}

// emitLine writes a complete line's content plus CRLF and applies the line
// and header rules. lineLen is the whole line's length, of which content is
// the last part.
func (d *DotReader) emitLine(content []byte, lineLen int) {
	if lineLen > d.Lim.MaxLine {
		d.refuse(LineTooLong(d.Lim.MaxLine))
	}
	if d.inHeader {
		if lineLen == 0 {
			d.inHeader = false
		} else if len(content) == lineLen && HasPrefixFold(content, "received:") {
			d.received++
			if d.received > d.Lim.MaxReceived {
				d.refuse(ErrLoop)
			}
		}
	}
	d.countHeader(len(content) + 2)
	d.emit(content)
	d.emit(crlf)
}

// endLine finishes a line whose CRLF arrived split across two reads.
func (d *DotReader) endLine(lineLen int, crlf []byte) {
	if lineLen > d.Lim.MaxLine {
		d.refuse(LineTooLong(d.Lim.MaxLine))
	}
	if d.inHeader && lineLen == 0 {
		d.inHeader = false
	}
	d.countHeader(2)
	d.emit(crlf)
}

func (d *DotReader) countHeader(n int) {
	if !d.inHeader {
		return
	}
	d.header += n
	if d.header > d.Lim.MaxHeader {
		d.refuse(HeaderTooBig(d.Lim.MaxHeader))
	}
}

// refuse records the first reason to refuse the message; from then on
// nothing more is written.
func (d *DotReader) refuse(r *Error) {
	if d.reject == nil {
		d.reject = r
	}
}

func (d *DotReader) emit(p []byte) {
	if len(p) == 0 {
		return
	}
	d.Size += int64(len(p))
	if d.Size > d.Lim.MaxBytes {
		d.refuse(TooBig(d.Lim.MaxBytes))
	}
	if d.reject != nil || d.werr != nil {
		return
	}
	if _, err := d.Dst.Write(p); err != nil {
		d.werr = err
	}
}

// crlf is the line end the reader writes: one slice for every line, since
// a literal passed to Dst's Write would be allocated anew each time (it
// escapes through the interface).
var crlf = []byte("\r\n")

// HasPrefixFold reports whether b begins with prefix, ASCII case folded;
// prefix is lower case.
func HasPrefixFold(b []byte, prefix string) bool {
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
