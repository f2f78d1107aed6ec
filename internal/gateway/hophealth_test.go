package gateway

import (
	"testing"

	"smimegate/internal/courier"
)

// A hop that gave no reply at all is bypassed; any reply, even a refusal,
// forgets that.
func TestHopHealth(t *testing.T) {
	h := newHopHealth()
	if h.down("a:25") {
		t.Fatal("an unknown hop is down")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Deferred, Reply: "connect: connection refused"}})
	if !h.down("a:25") || h.down("b:25") {
		t.Fatal("a silent hop is not remembered, or the wrong one is")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Deferred, Code: 451, Reply: "451 4.3.0 later"}})
	if h.down("a:25") {
		t.Fatal("a hop that answered is still bypassed")
	}
	h.observe("a:25", []courier.Result{{Status: courier.Failed, Reply: "bad recipient address syntax"}})
	if h.down("a:25") {
		t.Fatal("a local refusal made the hop look down")
	}
}
