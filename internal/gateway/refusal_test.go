package gateway

import (
	"strings"
	"testing"

	"smimegate/internal/spool"
)

// The client of a message refused for good at a relay-first attempt gets
// the next hop's code and words, or 554 with our reason when the refusal
// was the courier's own.
func TestRefusalReply(t *testing.T) {
	for _, tc := range []struct {
		status, diag, remote string
		code                 int
		enh                  [3]int
		words                string
	}{
		{"5.1.1", "550 5.1.1 no such user", "mx.example.net", 550, [3]int{5, 1, 1}, "Refused by mx.example.net for b@example.net: 550 5.1.1 no such user"},
		{"5.3.4", "552 5.3.4 too big", "", 552, [3]int{5, 3, 4}, "Refused by the next hop"},
		{"5.3.4", "message size 900 exceeds size limit 100 of server x[192.0.2.1:25]", "", 554, [3]int{5, 3, 4}, "exceeds size limit"},
		{"", "", "", 554, [3]int{5, 0, 0}, "Refused by the next hop"},
		{"4.0.0", "599 odd", "", 554, [3]int{5, 0, 0}, "599 odd"},
	} {
		r := refusal(map[int][]failure{0: {{d: spool.Delivery{Recipient: spool.Recipient{Addr: "b@example.net"}}, status: tc.status, diag: tc.diag, remote: tc.remote}}})
		if r.Code != tc.code || r.Enhanced != tc.enh || !strings.Contains(r.Message, tc.words) {
			t.Errorf("%q %q: got %d %v %q", tc.status, tc.diag, r.Code, r.Enhanced, r.Message)
		}
	}
}
