package courier

import (
	"strings"
	"testing"

	"smimegate/internal/smtp"
)

// maxReplyText is the bound on reply texts, for the tests' checks.
const maxReplyText = smtp.MaxReplyText

// enh is an enhanced status code written as RFC 3463 writes it.
func enh(s string) smtp.EnhancedCode {
	c, ok := smtp.ParseEnhancedCode(s)
	if !ok {
		panic("not an enhanced status code: " + s)
	}
	return c
}

// badStatus is of a class RFC 3463 does not have; noStatus is none.
var badStatus, noStatus = smtp.EnhancedCode{3, 5, 0}, smtp.EnhancedCode{}

func validStatus(s string) bool {
	_, ok := smtp.ParseEnhancedCode(s)
	return ok
}

// serverReply is a one-line reply as a server writes it, "550 5.1.1 text".
func serverReply(line string) *smtp.Error {
	code := 0
	for _, c := range line[:3] {
		code = code*10 + int(c-'0')
	}
	return smtp.ParseReply(code, []string{strings.TrimPrefix(line[3:], " ")})
}

// stats reports open connections in total and for key, and the idle ones
// of key.
func (p *pool) stats(key string) (total, dest, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.dests[key]; d != nil {
		dest, idle = d.open, len(d.idle)
	}
	return p.total, dest, idle
}

// Every outcome the courier makes for itself has an SMTP code of the class
// its enhanced code says and is marked as not the next hop's; the codes
// are those a server would have used (RFC 5321 section 4.2.3).
func TestOwnReplies(t *testing.T) {
	for _, tc := range []struct {
		f    *failure
		code int
	}{
		{connFailure(faultDial, "connect to x[192.0.2.1:25]: connection refused"), 421},
		{connFailure(faultLost, "lost connection"), 421},
		{connFailure(faultNoTLS, "TLS is required"), 421},
		{connFailure(faultTLS, "handshake"), 421},
		{localFailure(Deferred, enh("4.4.3"), "DNS"), 421},
		{localFailure(Deferred, enh("4.3.0"), "cannot read"), 451},
		{localFailure(Failed, enh("5.1.3"), "bad recipient address syntax"), 553},
		{localFailure(Failed, enh("5.3.4"), "too big"), 552},
		{localFailure(Failed, enh("5.6.7"), "SMTPUTF8"), 554},
	} {
		f := tc.f
		if f.remote || f.reply.Code != tc.code || f.reply.Enhanced != f.enhanced || f.reply.Code/100 != f.enhanced[0] {
			t.Errorf("%q: %+v, want code %d of its own", f.reply.Message, f.reply, tc.code)
		}
		if f.text() != f.reply.Message {
			t.Errorf("%q: our own failure reads %q", f.reply.Message, f.text())
		}
	}
	if f := connFailure(faultLost, "a\r\nb"); strings.ContainsAny(f.reply.Message, "\r\n") {
		t.Errorf("unsanitised text %q", f.reply.Message)
	}
	// A server's 5xx to the greeting only defers, its reply unchanged.
	f := replyFailure(serverReply("554 5.7.1 go away")).soften()
	if f.status != Deferred || f.enhanced != enh("4.7.1") || f.reply.Code != 554 || !f.remote || f.text() != "554 5.7.1 go away" {
		t.Errorf("softened: %+v", f)
	}
	// A 2xx where a refusal was due is retried.
	if f := replyFailure(serverReply("250 2.0.0 ok")); f.status != Deferred || f.enhanced != enh("4.5.0") {
		t.Errorf("confused server: %+v", f)
	}
}
