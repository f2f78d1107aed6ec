package smime

// RemoveHeaderFields returns msg without the fields of its header section
// for which drop (given the field name and its unfolded value) is true,
// and how many were removed. msg itself is returned when none is; else the
// result is a new buffer and msg is untouched. Lines of the header that are
// not fields stay as they are.
func RemoveHeaderFields(msg []byte, drop func(name, value string) bool) ([]byte, int) {
	header, _ := splitHeader(msg)
	var spans [][2]int
	for s := newHeaderScanner(header); s.next(); {
		if s.fields > maxHeaderFields {
			break
		}
		if drop(string(s.name), s.value()) {
			end := len(header) - len(s.rest)
			spans = append(spans, [2]int{end - len(s.raw), end})
		}
	}
	if len(spans) == 0 {
		return msg, 0
	}
	out := make([]byte, 0, len(msg))
	at := 0
	for _, sp := range spans {
		out = append(out, msg[at:sp[0]]...)
		at = sp[1]
	}
	return append(out, msg[at:]...), len(spans)
}

// LeadingTraceField returns the length of the first header field of msg
// when it is a Received field (the gateway's own, which the receiver puts
// first), else 0.
func LeadingTraceField(msg []byte) int {
	header, _ := splitHeader(msg)
	s := newHeaderScanner(header)
	if !s.next() || !s.is("Received") {
		return 0
	}
	if end := len(header) - len(s.rest); end == len(s.raw) {
		return end
	}
	return 0
}
