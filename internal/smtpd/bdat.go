package smtpd

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"

	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// maxChunkSizeDigits bounds the chunk-size of a BDAT command (RFC 3030
// section 2: 1*DIGIT): 18 digits always fit an int64, and a chunk of 10^18
// octets is refused as too big long before that matters.
const maxChunkSizeDigits = 18

// bdatMessage is a message arriving in BDAT chunks (RFC 3030).
type bdatMessage struct {
	in    *spool.Incoming
	start time.Time
	check chunkChecker
}

// parseBDAT reads "chunk-size [LAST]" (RFC 3030 section 2, with LAST in
// any case as every SMTP keyword).
func parseBDAT(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f[0]) > maxChunkSizeDigits || strings.TrimLeft(f[0], "0123456789") != "" {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	return n, last, err == nil
}

// bdat handles BDAT (RFC 3030 section 2). Each chunk's octets are read
// from the connection's own buffer, never as commands, and checked by the
// same rules as DATA (chunkChecker) across chunk boundaries. A refused
// chunk is read and thrown away so that the dialogue stays in step, as
// RFC 3030 section 2 requires ("the receiver-SMTP MUST ... consume the
// data"); after it every BDAT of the transaction is refused until RSET
// (section 3). A chunk larger than smtp.max_message_bytes is refused
// without being read, and the connection closed: reading more than a
// whole message's worth only to discard it would make the limit no bound.
// The 250 of BDAT LAST comes only once the message is committed or handed
// off, exactly as for DATA (finish).
func (c *conn) bdat(arg string) {
	size, last, ok := parseBDAT(arg)
	if !ok {
		// Without a chunk size the octets that follow cannot be told from
		// the next command: the only safe way on is none.
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "Syntax: BDAT chunk-size [LAST] (RFC 3030 section 2); the stream cannot be followed, closing the connection"))
		c.quit = true
		return
	}
	maxBytes := c.srv.cfg.SMTP.MaxMessageBytes
	var soFar int64
	if c.tx.bdat != nil {
		soFar = c.tx.bdat.check.size
	}
	var refuse *smtp.Error
	switch {
	case !c.tx.hasMail:
		refuse = smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Send MAIL first")
	case c.tx.bdatFailed:
		refuse = smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "An earlier BDAT of this transaction was refused; send RSET (RFC 3030 section 3)")
	case len(c.tx.rcpts) == 0:
		refuse = smtp.NewError(554, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	case size > maxBytes-soFar:
		c.tx.chunked = true
		id := ""
		if c.tx.bdat != nil {
			id = c.tx.bdat.in.ID
		}
		refuse = c.logResult(id, soFar+size, smtp.TooBig(maxBytes))
	}
	if refuse != nil {
		if size > maxBytes {
			c.reply(refuse)
			c.quit = true
			return
		}
		if err := c.readChunk(size, time.Now(), 0, nil); err != nil {
			c.quit = true
			return
		}
		c.reply(refuse)
		c.failBDAT()
		return
	}
	c.tx.chunked = true
	if c.tx.bdat == nil {
		start := time.Now()
		in, e := c.begin(start)
		if e != nil {
			if c.readChunk(size, start, 0, nil) != nil {
				c.quit = true
				return
			}
			c.reply(e)
			c.failBDAT()
			return
		}
		c.tx.bdat = &bdatMessage{in: in, start: start, check: chunkChecker{lim: c.messageLimits(), dst: in, inHeader: true}}
	}
	m := c.tx.bdat
	if err := c.readChunk(size, m.start, m.check.size, m.check.write); err != nil {
		c.reply(c.cut(m.in.ID, m.check.size, "BDAT", err))
		c.resetTx()
		return
	}
	if last {
		m.check.end()
	}
	switch {
	case m.check.reject != nil:
		c.reply(c.logResult(m.in.ID, m.check.size, m.check.reject))
		if last {
			c.resetTx()
			c.flush()
			return
		}
		c.failBDAT()
		return
	case m.check.werr != nil:
		c.srv.log.Error("smtpd: writing to the spool failed", "id", m.in.ID, "err", m.check.werr)
		c.reply(c.logResult(m.in.ID, m.check.size, storageError(m.check.werr)))
		if last {
			c.resetTx()
			c.flush()
			return
		}
		c.failBDAT()
		return
	case !last:
		c.replyRaw(250, []byte("250 2.0.0 "+strconv.FormatInt(size, 10)+" octets received\r\n"))
		return
	}
	c.reply(c.finish(m.in, m.start))
	c.resetTx()
	c.flush()
}

// failBDAT ends the message of a transaction whose BDAT was refused; the
// transaction stays (its envelope is the client's to RSET) but takes no
// more chunks.
func (c *conn) failBDAT() {
	if !c.tx.hasMail {
		return
	}
	if c.tx.bdat != nil {
		c.tx.bdat.in.Abort()
		c.tx.bdat = nil
	}
	c.tx.bdatFailed = true
}

// readChunk reads n octets of a BDAT chunk from the connection's buffer
// into write (nil: thrown away), with DATA's read deadlines: start is when
// the message began and before the octets it already had, for
// min_data_rate.
func (c *conn) readChunk(n int64, start time.Time, before int64, write func([]byte)) error {
	deadline := c.dataDeadline(start)
	total := before
	for n > 0 {
		if c.br.Buffered() == 0 {
			if err := deadline(total); err != nil {
				return err
			}
			if _, err := c.br.Peek(1); err != nil {
				return err
			}
		}
		k := int(min(n, int64(c.br.Buffered())))
		p, _ := c.br.Peek(k)
		if write != nil {
			write(p)
		}
		c.br.Discard(k)
		n -= int64(k)
		total += int64(k)
	}
	return nil
}

// chunkChecker applies DATA's rules (smtp.DotReader) to a message that
// comes in BDAT chunks, octet for octet and across chunk boundaries: lines
// end in CRLF, and a CR or LF anywhere else is refused, so a CR that ends
// one chunk and an LF that starts the next are a CRLF, and a CR or LF
// alone on either side of a boundary is bare (RFC 5321 section 2.3.8; RFC
// 3030 section 3 leaves the content rules of 8BITMIME in force); no NUL;
// the line, header-section and size limits; the Received count. BDAT has
// no dot-stuffing and no terminator, so what passes is stored as it came.
type chunkChecker struct {
	lim smtp.Limits
	dst io.Writer

	size      int64 // octets of the BDAT stream so far
	lineLen   int   // octets of the current line so far, CRLF excluded
	pendingCR bool  // the last octet was a CR whose LF has not come yet
	inHeader  bool
	header    int
	received  int
	// prefix is the start of the current line, enough to tell a Received
	// field that begins in one chunk and goes on in the next.
	prefix  [len("received:")]byte
	nprefix int
	reject  *smtp.Error
	werr    error
}

func (k *chunkChecker) refuse(e *smtp.Error) {
	if k.reject == nil {
		k.reject = e
	}
}

// write checks one piece of the stream and passes it on while the message
// is still acceptable.
func (k *chunkChecker) write(p []byte) {
	base := k.size
	k.size += int64(len(p))
	if k.size > k.lim.MaxBytes {
		k.refuse(smtp.TooBig(k.lim.MaxBytes))
	}
	if i := bytes.IndexByte(p, 0); i >= 0 {
		k.refuse(smtp.NULInMessage("BDAT", base+int64(i)))
	}
	if k.reject == nil && k.werr == nil {
		if _, err := k.dst.Write(p); err != nil {
			k.werr = err
		}
	}
	for len(p) > 0 {
		if k.pendingCR {
			k.pendingCR = false
			if p[0] == '\n' {
				k.endLine()
				p = p[1:]
				continue
			}
			k.refuse(smtp.ErrBareNewline)
			k.addToLine([]byte{'\r'})
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			seg := p
			if seg[len(seg)-1] == '\r' {
				seg = seg[:len(seg)-1]
				k.pendingCR = true
			}
			if bytes.IndexByte(seg, '\r') >= 0 {
				k.refuse(smtp.ErrBareNewline)
			}
			k.addToLine(seg)
			return
		}
		seg := p[:i]
		p = p[i+1:]
		if len(seg) == 0 || seg[len(seg)-1] != '\r' {
			// A bare LF: refused, and the line goes on as far as the
			// limits are concerned.
			k.refuse(smtp.ErrBareNewline)
			k.addToLine(seg)
			continue
		}
		seg = seg[:len(seg)-1]
		if bytes.IndexByte(seg, '\r') >= 0 {
			k.refuse(smtp.ErrBareNewline)
		}
		k.addToLine(seg)
		k.endLine()
	}
}

// addToLine counts a piece of the current line.
func (k *chunkChecker) addToLine(seg []byte) {
	if k.nprefix < len(k.prefix) {
		k.nprefix += copy(k.prefix[k.nprefix:], seg)
	}
	k.lineLen += len(seg)
	if k.lineLen > k.lim.MaxLine {
		k.refuse(smtp.LineTooLong(k.lim.MaxLine))
	}
	k.countHeader(len(seg))
}

// endLine finishes a line at its CRLF.
func (k *chunkChecker) endLine() {
	if k.inHeader {
		if k.lineLen == 0 {
			k.inHeader = false
		} else {
			k.countHeader(2)
			if smtp.HasPrefixFold(k.prefix[:k.nprefix], "received:") {
				k.received++
				if k.received > k.lim.MaxReceived {
					k.refuse(smtp.ErrLoop)
				}
			}
		}
	}
	k.lineLen, k.nprefix = 0, 0
}

func (k *chunkChecker) countHeader(n int) {
	if !k.inHeader {
		return
	}
	k.header += n
	if k.header > k.lim.MaxHeader {
		k.refuse(smtp.HeaderTooBig(k.lim.MaxHeader))
	}
}

// end is called after the LAST chunk. A CR still waiting for its LF is
// bare. A last line without CRLF is given one: a DATA stream cannot even
// express a message that ends otherwise (its terminator's CRLF ends the
// last line), and every message stored is made of whole lines.
func (k *chunkChecker) end() {
	if k.pendingCR {
		k.refuse(smtp.ErrBareNewline)
		return
	}
	if k.lineLen > 0 {
		if k.reject == nil && k.werr == nil {
			if _, err := k.dst.Write([]byte("\r\n")); err != nil {
				k.werr = err
			}
		}
		k.endLine()
	}
}
