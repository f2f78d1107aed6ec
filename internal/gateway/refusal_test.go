package gateway

import (
	"strings"
	"testing"

	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// The client of a message refused for good at a relay-first attempt gets
// the next hop's code and words, or 554 with our reason when the refusal
// was the courier's own. The reply is built from the failure's Code and
// Enhanced fields: words that look like a code are never read as one.
func TestRefusalReply(t *testing.T) {
	for _, tc := range []struct {
		status  smtp.EnhancedCode
		reply   smtp.Error
		fromHop bool
		remote  string
		code    int
		enh     [3]int
		words   string
	}{
		{smtp.EnhancedCode{5, 1, 1}, smtp.Error{Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, true, "mx.example.net", 550, [3]int{5, 1, 1}, "Refused by mx.example.net for b@example.net: 550 5.1.1 no such user"},
		{smtp.EnhancedCode{5, 3, 4}, smtp.Error{Code: 552, Enhanced: smtp.EnhancedCode{5, 3, 4}, Message: "too big"}, true, "", 552, [3]int{5, 3, 4}, "Refused by the next hop"},
		// The courier's own 552 for a message over the hop's SIZE is not
		// the next hop's word: the client gets the catch-all.
		{smtp.EnhancedCode{5, 3, 4}, smtp.Error{Code: 552, Enhanced: smtp.EnhancedCode{5, 3, 4}, Message: "message size 900 exceeds size limit 100 of server x[192.0.2.1:25]"}, false, "", 554, [3]int{5, 3, 4}, "exceeds size limit"},
		{smtp.EnhancedCode{}, smtp.Error{}, false, "", 554, [3]int{5, 0, 0}, "Refused by the next hop"},
		{smtp.EnhancedCode{4, 0, 0}, smtp.Error{Code: 599, Message: "odd"}, true, "", 554, [3]int{5, 0, 0}, "599 odd"},
		// Our own words that start like a reply are words.
		{smtp.EnhancedCode{5, 7, 1}, smtp.Error{Code: 554, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "550 5.1.1 as text"}, false, "", 554, [3]int{5, 7, 1}, ": 550 5.1.1 as text"},
	} {
		f := failure{d: spool.Delivery{Recipient: spool.Recipient{Addr: "b@example.net"}}, status: tc.status, reply: tc.reply, fromHop: tc.fromHop, remote: tc.remote}
		r := refusal(map[int][]failure{0: {f}})
		if r.Code != tc.code || r.Enhanced != tc.enh || !strings.Contains(r.Message, tc.words) {
			t.Errorf("%v %+v from hop %v: got %d %v %q", tc.status, tc.reply, tc.fromHop, r.Code, r.Enhanced, r.Message)
		}
	}
}
