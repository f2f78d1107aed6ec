package gateway

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"time"

	"smimegate/internal/courier"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// failure is one recipient for a delivery status notification, or for the
// refusal a relay-first client gets.
type failure struct {
	d spool.Delivery
	// status is the enhanced status code to report (RFC 3463), 5.1.1; of
	// class 5 for a failure, 4 for a delay.
	status smtp.EnhancedCode
	// reply is what decided it: the next hop's reply when fromHop, else
	// the courier's or our own reason in a reply of ours.
	reply   smtp.Error
	fromHop bool
	remote  string // remote MTA that answered, if any
	delayed bool   // a delay warning rather than a failure
	version int
}

// ownFailure is a failure the gateway decides itself (a domain that does
// not canonicalise, a hold that expired, a policy step that failed): no
// next hop replied, and the DSN gives reason as our own diagnostic.
func ownFailure(d spool.Delivery, status smtp.EnhancedCode, reason string) failure {
	code := 554 // RFC 5321 section 4.2.3, "Transaction failed"
	if status[0] == 4 {
		code = 451
	}
	return failure{d: d, status: status, reply: smtp.Error{Code: code, Enhanced: status, Message: reason}}
}

// resultFailure is the failure of a recipient as the courier reported it.
func resultFailure(d spool.Delivery, res *courier.Result) failure {
	return failure{d: d, status: res.Enhanced, reply: res.Reply, fromHop: res.Remote, remote: res.HostName}
}

// diagnostic is the failure on one line: the next hop's reply as it sent
// it, or the reason.
func (f *failure) diagnostic() string {
	if f.fromHop {
		return f.reply.Error()
	}
	return f.reply.Message
}

// bounce queues an RFC 3464 report about failed (or delayed) recipients to
// the envelope sender. A message from the null sender is never bounced
// (RFC 5321 section 4.5.5): it is logged and dropped. Recipients that asked
// for NOTIFY=NEVER, or did not ask for FAILURE/DELAY when they asked for
// anything, get no report (RFC 3461 section 4.1).
//
// The report carries the original header only, never the body of a message
// that was (or was to be) encrypted; the whole original only for RET=FULL of
// a message that was passed in the clear anyway and came from a trusted
// client.
func (g *Gateway) bounce(env *spool.Envelope, v *spool.Version, failed []failure, delayed bool) error {
	if env.Sender == "" {
		addrs := make([]string, len(failed))
		for i, f := range failed {
			addrs[i] = f.d.Addr
		}
		g.log.Warn("not bouncing a message from the null sender", "queue_id", env.ID, "recipients", strings.Join(addrs, ","), "delayed", delayed)
		return nil
	}
	want := "FAILURE"
	if delayed {
		want = "DELAY"
	}
	var report []courier.DSNRecipient
	for _, f := range failed {
		if notify := f.d.Notify; len(notify) > 0 && !slices.Contains(notify, want) {
			continue
		}
		action := courier.ActionFailed
		if delayed {
			action = courier.ActionDelayed
		}
		r := courier.DSNRecipient{
			Addr:        f.d.Addr,
			ORcpt:       smtp.DecodeORcpt(f.d.ORcpt),
			Action:      action,
			Status:      f.status,
			RemoteMTA:   f.remote,
			LastAttempt: time.Now(),
		}
		if f.fromHop {
			r.Reply = &f.reply
		} else {
			r.Diagnostic = f.reply.Message
		}
		if delayed {
			r.WillRetryUntil = env.Arrival.Add(g.Config().Queue.Lifetime.D())
		}
		report = append(report, r)
	}
	if len(report) == 0 {
		return nil
	}

	cfg := g.Config()
	// RET=FULL is honoured only for a client in the trusted networks. From
	// anyone else the envelope sender is a claim: returning the whole
	// message to it would carry an attacker's content to any third party
	// (backscatter), so such a report carries the header only.
	full := env.RET == "FULL" && v.Action == spool.ActionPass && env.Trusted
	var original, hdr []byte
	var err error
	if full {
		original, err = g.spool.ReadData(env.ID, "")
		hdr = HeaderSection(original)
	} else {
		hdr, err = g.readHeader(env.ID, v.Data)
	}
	if err != nil {
		return err
	}
	dsn, err := courier.BuildDSN(courier.DSNReport{
		ReportingMTA:   cfg.Hostname,
		Sender:         env.Sender,
		EnvID:          env.EnvID,
		QueueID:        env.ID,
		Arrival:        env.Arrival,
		Recipients:     report,
		Header:         hdr,
		IncludeMessage: full,
		Message:        original,
	})
	if err != nil {
		return err
	}
	in, err := g.spool.NewMessage()
	if err != nil {
		return err
	}
	if _, err := in.Write(dsn); err != nil {
		in.Abort()
		return err
	}
	benv := &spool.Envelope{
		ID:         in.ID,
		Sender:     "",
		Recipients: []spool.Recipient{{Addr: env.Sender, Notify: []string{"NEVER"}}},
		Client:     "local",
		Helo:       cfg.Hostname,
		Trusted:    true,
		Arrival:    time.Now(),
		Size:       int64(len(dsn)),
		Stage:      spool.StageReceived,
	}
	if eightBit, utf8 := courier.DSNNeeds(dsn); utf8 {
		benv.SMTPUTF8 = true
		benv.Body = "8BITMIME"
	} else if eightBit {
		benv.Body = "8BITMIME"
	}
	if err := in.Commit(benv); err != nil {
		return err
	}
	kind := "bounce"
	if delayed {
		kind = "delay warning"
	}
	g.log.Info("queued "+kind, "queue_id", env.ID, "dsn_id", in.ID, "to", env.Sender, "recipients", len(report))
	g.metrics.bounces.Inc()
	g.sched.schedule(in.ID, time.Now())
	return nil
}

// HeaderSection returns the header section of a message, up to and
// including the empty line that ends it (RFC 5322 section 2.1), or the whole
// message when it has no body. It is what a report quotes and what the
// queue commands show, whether they ask a running gateway or read a
// stopped one's spool.
func HeaderSection(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}

// maxBounceHeader bounds the header section copied into a report
// (Postfix's header_size_limit is 100 KiB).
const maxBounceHeader = 1 << 20

// readHeader returns the header section of the original for a report. When
// every copy was sealed the original is gone from the spool (plaintext is
// kept no longer than needed), and the header of the version itself stands
// in: for a sealed copy that is the outer header, which names the message
// without revealing its content.
func (g *Gateway) readHeader(id, version string) ([]byte, error) {
	f, err := g.spool.OpenData(id, "")
	if err != nil {
		f, err = g.spool.OpenData(id, version)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(io.LimitReader(f, maxBounceHeader))
	var hdr []byte
	for {
		line, err := br.ReadBytes('\n')
		hdr = append(hdr, line...)
		if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
			return hdr, nil
		}
	}
}
