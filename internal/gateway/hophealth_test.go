package gateway

import (
	"testing"

	"smimegate/internal/courier"
	"smimegate/internal/smtp"
)

// A hop that gave no reply at all is bypassed; any reply, even a refusal,
// forgets that. What counts is whether the reply was the hop's (Remote),
// not its code: the courier gives its own failures codes too.
func TestHopHealth(t *testing.T) {
	h := newHopHealth()
	if h.down("a:25") {
		t.Fatal("an unknown hop is down")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Deferred,
		Reply: smtp.Error{Code: 421, Enhanced: smtp.EnhancedCode{4, 4, 1}, Message: "connect: connection refused"}}})
	if !h.down("a:25") || h.down("b:25") {
		t.Fatal("a silent hop is not remembered, or the wrong one is")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Deferred, Remote: true,
		Reply: smtp.Error{Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "later"}}})
	if h.down("a:25") {
		t.Fatal("a hop that answered is still bypassed")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Failed,
		Reply: smtp.Error{Code: 553, Enhanced: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}}})
	if h.down("a:25") {
		t.Fatal("a local refusal made the hop look down")
	}
}
