package rig

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPSource runs Postfix's smtp-source: msgs messages of a size-byte body
// over sessions parallel sessions, a new connection for each message (its
// default). It returns once every message has had its reply.
func SMTPSource(h *Harness, addr string, msgs, sessions, size int, from, to string) {
	bin, err := exec.LookPath("smtp-source")
	if err != nil {
		bin = "/usr/sbin/smtp-source"
	}
	args := []string{"-m", strconv.Itoa(msgs), "-s", strconv.Itoa(sessions), "-l", strconv.Itoa(size), "-f", from, "-t", to, addr}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		h.Fatalf("smtp-source %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Message returns an RFC 5322 message with CRLF line ends whose body is
// bodySize bytes of 76-character text lines. marker, if not empty, is put
// into an X-Bench-Marker header field so that a sink can recognise it.
func Message(from, to, marker string, bodySize int) []byte {
	var b bytes.Buffer
	b.Grow(bodySize + 512)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: benchmark\r\nDate: %s\r\nMessage-ID: <%d.%s>\r\n",
		from, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), from)
	if marker != "" {
		fmt.Fprintf(&b, "X-Bench-Marker: %s\r\n", marker)
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog, again and again and again...\r\n"
	for n := 0; n < bodySize; n += len(line) {
		if bodySize-n < len(line) {
			b.WriteString(strings.Repeat("x", max(0, bodySize-n-2)))
			b.WriteString("\r\n")
			break
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

// IsSMIME tells whether data is an encrypted S/MIME message: its top-level
// header says application/pkcs7-mime (RFC 8551 section 3.2).
func IsSMIME(data []byte) bool {
	header, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return bytes.Contains(bytes.ToLower(header), []byte("application/pkcs7-mime"))
}

// Client is one SMTP connection of the Go load generator, kept open for
// several transactions.
type Client struct {
	addr string
	c    *smtp.Client
}

// Dial opens a connection and says EHLO.
func Dial(addr string) (*Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	c.CommandTimeout = 5 * time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	if err := c.Hello("load.bench.invalid"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO to %s: %w", addr, err)
	}
	return &Client{addr: addr, c: c}, nil
}

// Send runs one transaction and returns once the final reply came.
func (c *Client) Send(from string, to []string, msg io.Reader) error {
	if err := c.c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL FROM %s at %s: %w", from, c.addr, err)
	}
	for _, rcpt := range to {
		if err := c.c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT TO %s at %s: %w", rcpt, c.addr, err)
		}
	}
	w, err := c.c.Data()
	if err != nil {
		return fmt.Errorf("DATA at %s: %w", c.addr, err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		w.Close()
		return fmt.Errorf("message to %s: %w", c.addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data at %s: %w", c.addr, err)
	}
	return nil
}

// Close says QUIT and closes the connection.
func (c *Client) Close() error {
	err := c.c.Quit()
	if err != nil {
		c.c.Close()
	}
	return err
}

// Job is one message for SendAll.
type Job struct {
	From string
	To   []string
	Data []byte
}

// SendAll sends jobs over sessions parallel connections, each kept open for
// its share of the jobs, and returns the first error.
func SendAll(addr string, sessions int, jobs []Job) error {
	next := make(chan Job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *Client
			for j := range next {
				if c == nil {
					var err error
					if c, err = Dial(addr); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						continue
					}
				}
				if err := c.Send(j.From, j.To, bytes.NewReader(j.Data)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					c.c.Close()
					c = nil
				}
			}
			if c != nil {
				_ = c.Close()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d messages failed: %w", len(errs), len(jobs), errs[0])
	}
	return nil
}
