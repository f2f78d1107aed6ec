package courier

import (
	"testing"
	"time"
)

func TestBackoffDoublesLikePostfix(t *testing.T) {
	min, max := 300*time.Second, 4000*time.Second // Postfix's defaults
	want := []time.Duration{300 * time.Second, 300 * time.Second, 600 * time.Second, 1200 * time.Second, 2400 * time.Second, 4000 * time.Second, 4000 * time.Second}
	for attempts, w := range want {
		if got := Backoff(attempts, min, max); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", attempts, got, w)
		}
	}
	for _, tc := range []struct {
		attempts int
		min, max time.Duration
		want     time.Duration
	}{
		{1000, time.Second, time.Hour, time.Hour}, // no overflow however many attempts
		{3, time.Minute, 30 * time.Second, time.Minute},
		{2, 0, time.Hour, 0},
		{-5, time.Minute, time.Hour, time.Minute},
		{63, time.Duration(1 << 62), time.Duration(1<<63 - 1), time.Duration(1<<63 - 1)},
	} {
		if got := Backoff(tc.attempts, tc.min, tc.max); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tc.attempts, tc.min, tc.max, got, tc.want)
		}
	}
}
