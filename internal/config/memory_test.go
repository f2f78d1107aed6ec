package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	t.Parallel()
	total := func() (int64, error) { return 8 << 30, nil }
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"25%", 2 << 30, ""},
		{"12.5%", 1 << 30, ""},
		{"100%", 8 << 30, ""},
		{"2GiB", 2 << 30, ""},
		{"512MiB", 512 << 20, ""},
		{"500MB", 500e6, ""},
		{"1073741824", 1 << 30, ""},
		{" 3 GiB ", 3 << 30, ""},
		{"0%", 0, "percentage"},
		{"101%", 0, "percentage"},
		{"lots", 0, "neither a size"},
		{"-5GiB", 0, "neither a size"},
		{"1MiB", 0, "less than the least budget"},
		{"99999999999TiB", 0, "neither a size"},
	} {
		got, err := parseMemory(tc.in, total)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMemory(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseMemory("25%", func() (int64, error) { return 0, errors.New("no sysinfo") }); err == nil || !strings.Contains(err.Error(), "give the budget in bytes") {
		t.Errorf("an unreadable memory size gave %v", err)
	}
	if n, err := physicalMemory(); err != nil || n < minMemory {
		t.Errorf("physicalMemory() = %d, %v", n, err)
	}
}
