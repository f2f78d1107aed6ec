package eximtest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"smimegate/internal/mailsink"
)

// TestSubmitDelivers: an instance delivers what it is given on its
// standard input to its smarthost, with CHUNKING where the server offers
// it, and its transcript, log and queue say so.
func TestSubmitDelivers(t *testing.T) {
	sink, err := mailsink.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	in := Start(t, Options{Smarthost: sink.Addr})
	msg := []byte("From: <a@example.org>\nTo: <b@example.net>\nSubject: eximtest\nDate: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <eximtest@example.org>\n\nA body.\n.\n..\n")
	sub, err := in.Submit("a@example.org", []string{"b@example.net"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if sub.ID == "" || sub.Delivery() == "" {
		t.Fatalf("no message id or delivery in the transcript:\n%s", sub.Transcript)
	}
	got, err := sink.Wait(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].From != "a@example.org" || len(got[0].To) != 1 || got[0].To[0] != "b@example.net" {
		t.Errorf("envelope %s -> %v", got[0].From, got[0].To)
	}
	want := bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(got[0].Data, want) || !bytes.HasPrefix(got[0].Data, []byte("Received: from ")) {
		t.Errorf("the sink got\n%q\nwant Exim's Received field and then\n%q", got[0].Data, want)
	}
	if sizes, last := sub.Chunks(); strings.Contains(sub.Delivery(), "CHUNKING") && (len(sizes) == 0 || !last) {
		t.Errorf("the server offers CHUNKING, but Exim sent BDAT %v (LAST %v):\n%s", sizes, last, sub.Delivery())
	}
	if !strings.Contains(in.MainLog(), "=> b@example.net") {
		t.Errorf("no delivery line in the main log:\n%s", in.MainLog())
	}
	if n, err := in.QueueCount(); err != nil || n != 0 {
		t.Errorf("queue: %d messages (%v), want none", n, err)
	}
}

// TestChunksParsesTranscript: the BDAT commands are read from the
// message's own delivery, not from a bounce delivered after it.
func TestChunksParsesTranscript(t *testing.T) {
	s := Submission{ID: "1xYPRf-0001OQ-0N", Transcript: "<= a@example.org\ndelivering 1xYPRf-0001OQ-0N\n  SMTP|> RCPT TO:<b@example.net>\n  SMTP+> BDAT 372\n  SMTP+> BDAT 84014 LAST\n  SMTP<< 550 5.6.0 no\ndelivering 1xYPRf-0001OT-0P\n  SMTP+> BDAT 1807 LAST\n"}
	sizes, last := s.Chunks()
	if len(sizes) != 2 || sizes[0] != 372 || sizes[1] != 84014 || !last {
		t.Errorf("Chunks() = %v, %v; want [372 84014], true", sizes, last)
	}
	if s.SentDATA() {
		t.Error("SentDATA() is true for a BDAT delivery")
	}
	if (Submission{ID: "x", Transcript: "delivering x\n  SMTP+> DATA\n"}).SentDATA() != true {
		t.Error("SentDATA() misses a DATA command")
	}
}
