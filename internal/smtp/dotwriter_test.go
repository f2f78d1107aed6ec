package smtp

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// referenceDot is what net/textproto's DotWriter sends for the writes.
func referenceDot(writes [][]byte) []byte {
	var b bytes.Buffer
	w := textproto.NewWriter(bufio.NewWriter(&b))
	d := w.DotWriter()
	for _, p := range writes {
		d.Write(p)
	}
	d.Close()
	return b.Bytes()
}

func ourDot(writes [][]byte) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	d := NewDotWriter(bw)
	for _, p := range writes {
		d.Write(p)
	}
	d.Close()
	return b.Bytes()
}

// split cuts data into writes at the given offsets, so that CRLF pairs and
// leading dots fall across write boundaries.
func split(data []byte, every int) [][]byte {
	var out [][]byte
	for every > 0 && len(data) > every {
		out = append(out, data[:every])
		data = data[every:]
	}
	return append(out, data)
}

func TestDotWriterMatchesTextproto(t *testing.T) {
	inputs := []string{
		"",
		"Subject: x\r\n\r\nbody\r\n",
		".leading dot\r\n..two\r\nmid.dle\r\n.\r\n",
		"no final line end",
		"bare\nLF\n.dot after LF\n",
		"ends in CR\r",
		"\r\n.\r\n",
		".",
		"a\r\n.b\r\n\r\n.\r\n..\r\n",
	}
	for _, in := range inputs {
		for _, every := range []int{0, 1, 2, 3, 7} {
			writes := split([]byte(in), every)
			if got, want := ourDot(writes), referenceDot(writes); !bytes.Equal(got, want) {
				t.Errorf("%q in writes of %d: got %q, want %q", in, every, got, want)
			}
		}
	}
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte(".a\r\nb\n.c\r"), 3)
	f.Fuzz(func(t *testing.T, data []byte, every int) {
		if every < 0 || every > 64 {
			return
		}
		// textproto turns "\r\r\n" into "\r\r\r\n"; ours keeps it. Both are
		// valid SMTP; compare only inputs without a CR that is not
		// followed by LF, which is all that smimegate's spool holds.
		for i, c := range data {
			if c == '\r' && (i+1 >= len(data) || data[i+1] != '\n') {
				return
			}
		}
		writes := split(data, every)
		if got, want := ourDot(writes), referenceDot(writes); !bytes.Equal(got, want) {
			t.Errorf("%q in writes of %d: got %q, want %q", data, every, got, want)
		}
	})
}

func BenchmarkDotWriter(b *testing.B) {
	msg := bytes.Repeat([]byte("MIIDxwYLKoZIhvcNAQkQARegggO2MIIDsgIBADGCAWkwggFlAgEAME0wOTEhMB8GA1UECxMYUy9N\r\n"), 1400) // ~110 KB of base64
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			d := NewDotWriter(bufio.NewWriter(discard{}))
			d.Write(msg)
			d.Close()
		}
	})
	b.Run("textproto", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			d := textproto.NewWriter(bufio.NewWriter(discard{})).DotWriter()
			d.Write(msg)
			d.Close()
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
