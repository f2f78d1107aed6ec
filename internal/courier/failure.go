package courier

import (
	"errors"
	"fmt"

	"smimegate/internal/smtp"
)

// failure is an outcome shared by every recipient of a transaction (or of
// an attempt that never got as far).
type failure struct {
	status Status
	// reply is the reply behind the outcome: the server's (remote), or
	// one the courier made (ownReply).
	reply  smtp.Error
	remote bool
	// enhanced is the status to report, of status's class.
	enhanced smtp.EnhancedCode
	step     string // for the log: what the reply answered ("greeting", "EHLO")
	target   target // the host that failed, when one was tried
	answered bool   // a server answered: Host and TLS are known
	// nextHost says the next address may be tried (RFC 5321 section 5.1:
	// connection failures and greetings that refuse service).
	nextHost bool
	// dup: the content had left when the connection was lost, so the
	// server may have the message (Result.MaybeDuplicate).
	dup bool
}

// text is the failure as the log and Result.Diagnostic give it.
func (f *failure) text() string {
	if f.remote {
		return f.reply.Error()
	}
	return f.reply.Message
}

// replyFailure is the outcome a server's reply decides: its class, and the
// enhanced code it sent (or its class's X.0.0).
func replyFailure(r *smtp.Error) *failure {
	f := &failure{status: outcome(r), reply: *r, remote: true, enhanced: r.Status(), answered: true}
	if f.status == Delivered {
		// A 2xx where an error was expected (a confused server): retry,
		// with "4.5.0 Other or undefined protocol status" (RFC 3463
		// section 3.6).
		f.status, f.enhanced = Deferred, smtp.EnhancedCode{4, 5, 0}
	}
	return f
}

// outcome classifies a reply for a recipient: 2xx delivered, 5xx failed;
// 4xx, and anything a confused server sends that is neither, is worth
// another try later rather than a bounce.
func outcome(r *smtp.Error) Status {
	switch {
	case r.Positive():
		return Delivered
	case r.Permanent():
		return Failed
	}
	return Deferred
}

// soften turns a permanent failure into a deferral, with the status code
// class to match, as Postfix does where a 5xx must not bounce mail (a
// greeting that refuses service, a STARTTLS that TLS policy needed). The
// reply stays the server's.
func (f *failure) soften() *failure {
	if f.status == Failed {
		f.status = Deferred
		f.enhanced[0] = 4
	}
	return f
}

// localFailure is an outcome the courier decides without a reply: a
// recipient it will not send, a message it cannot read, a next hop it
// cannot find.
func localFailure(status Status, enhanced smtp.EnhancedCode, format string, args ...any) *failure {
	return &failure{status: status, enhanced: enhanced, reply: ownReply(enhanced, fmt.Sprintf(format, args...))}
}

// fault is a failure of the connection that no reply describes.
type fault int

const (
	// faultDial: no connection could be had. RFC 3463 section 3.5, X.4.1
	// "No answer from host".
	faultDial fault = iota
	// faultLost: the connection broke, timed out, was given up on, or
	// spoke something other than SMTP. X.4.2 "Bad connection".
	faultLost
	// faultNoTLS: TLS policy needs STARTTLS and the server did not offer
	// it. RFC 3463 section 3.8, X.7.4 "Security features not supported".
	faultNoTLS
	// faultTLS: the TLS handshake failed (a certificate that does not
	// verify, no common cipher, a server that hangs up). X.7.5
	// "Cryptographic failure".
	faultTLS
)

var faultCodes = [...]smtp.EnhancedCode{
	faultDial:  {4, 4, 1},
	faultLost:  {4, 4, 2},
	faultNoTLS: {4, 7, 4},
	faultTLS:   {4, 7, 5},
}

// connFailure is the one place where a failure of the connection becomes
// an SMTP outcome: always a deferral (the next attempt may find the
// connection, or the hop, fixed), with the RFC 3463 code of its fault.
func connFailure(fl fault, text string) *failure {
	return localFailure(Deferred, faultCodes[fl], "%s", text)
}

// ownReply is the reply the courier gives for an outcome no server
// replied: the code an SMTP server would have used for it (RFC 5321
// section 4.2.3), so that the one error type holds every outcome; the
// text sanitised as a server's would be. Result.Remote tells it from the
// next hop's own.
func ownReply(enh smtp.EnhancedCode, text string) smtp.Error {
	code := 451 // "Requested action aborted: local error in processing"
	switch {
	case enh[0] == 4 && (enh[1] == 4 || enh[1] == 7 || enh == smtp.EnhancedCode{4, 3, 2}):
		code = 421 // "Service not available, closing transmission channel"
	case enh[0] == 5 && enh[1] == 1:
		code = 553 // "mailbox name not allowed"
	case enh == smtp.EnhancedCode{5, 3, 4}:
		code = 552 // "exceeded storage allocation"
	case enh[0] == 5:
		code = 554 // "Transaction failed"
	}
	return smtp.Error{Code: code, Enhanced: enh, Message: smtp.SanitizeText(text)}
}

// lost describes a connection that broke, timed out, was given up on, or
// spoke something other than SMTP during a step.
func (s *session) lost(step string, err error, nextHost bool) *failure {
	var pe *smtp.ProtocolError
	var text string
	switch {
	case errors.Is(err, errTooSlow):
		text = fmt.Sprintf("gave up on %s[%s] while %s: %v", s.target.host, s.target.addr, step, err)
	case errors.As(err, &pe):
		text = fmt.Sprintf("protocol error from %s[%s] while %s: %v", s.target.host, s.target.addr, step, err)
	default:
		text = fmt.Sprintf("lost connection with %s[%s] while %s: %v", s.target.host, s.target.addr, step, netReason(err))
	}
	f := connFailure(faultLost, text)
	f.nextHost, f.answered = nextHost, true
	return f
}
