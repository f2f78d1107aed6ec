package spool

import "time"

// IDTime returns the creation time that a queue id carries (NewID encodes
// microseconds since the Unix epoch in its first idTimeChars characters),
// so that the age of a message is known without reading its envelope; ok
// is false for a string that is not a queue id.
func IDTime(id string) (t time.Time, ok bool) {
	if !validID(id) {
		return time.Time{}, false
	}
	var us uint64
	for i := range idTimeChars {
		c := id[i]
		var v uint64
		switch {
		case c >= '0' && c <= '9':
			v = uint64(c - '0')
		default:
			j := 10
			for j < len(idAlphabet) && idAlphabet[j] != c {
				j++
			}
			if j == len(idAlphabet) {
				return time.Time{}, false
			}
			v = uint64(j)
		}
		us = us<<5 | v
	}
	return time.UnixMicro(int64(us)), true
}
