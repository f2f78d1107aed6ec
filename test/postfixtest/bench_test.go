package postfixtest

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkPostfixHop measures what one Postfix hop costs on this machine,
// the reference against which a gateway beside Postfix is judged: the same
// batch of messages from smtp-source goes straight to smtp-sink, then through
// a Postfix instance to the same sink, in the same run. It reports both
// rates and their ratio (relayed/direct time; 1 would mean Postfix is free).
//
//	go test -run '^$' -bench PostfixHop -benchtime 5x ./test/postfixtest/
func BenchmarkPostfixHop(b *testing.B) {
	const batch = 50
	const size = 10 << 10
	sink := StartSink(b, SinkOptions{})
	pf := Start(b, Options{MainCF: map[string]string{"relayhost": "[127.0.0.1]:" + strconv.Itoa(sink.Port)}})
	opts := SourceOptions{Messages: batch, Sessions: 4, Size: size}

	var direct, relayed time.Duration
	received := 0
	for b.Loop() {
		start := time.Now()
		Source(b, sink.Addr, opts)
		received += batch
		sink.WaitCount(b, received, deliveryTimeout)
		direct += time.Since(start)

		start = time.Now()
		Source(b, pf.Addr, opts)
		received += batch
		sink.WaitCount(b, received, deliveryTimeout)
		relayed += time.Since(start)
	}
	msgs := float64(batch * b.N)
	b.ReportMetric(msgs/direct.Seconds(), "direct_msgs/s")
	b.ReportMetric(msgs/relayed.Seconds(), "postfix_msgs/s")
	b.ReportMetric(relayed.Seconds()/direct.Seconds(), "relayed/direct")
}
