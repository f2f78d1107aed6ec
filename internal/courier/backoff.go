package courier

import "time"

// Backoff is the wait before the next attempt after attempts failed ones,
// as Postfix's queue manager computes it: minimal_backoff_time after the
// first, doubling with every further attempt, never more than
// maximal_backoff_time. With Postfix's defaults (300s, 4000s) that is 5, 10,
// 20, 40 minutes and then about an hour and seven minutes for good.
//
// attempts below 1 count as 1; a max below min is taken as min.
func Backoff(attempts int, min, max time.Duration) time.Duration {
	if min <= 0 {
		return 0
	}
	if max < min {
		max = min
	}
	d := min
	for i := 1; i < attempts; i++ {
		// Stop doubling before it could overflow or pass max.
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return d
}
