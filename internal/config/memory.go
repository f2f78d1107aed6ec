package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// minMemory is the smallest memory budget: below it not even one message of
// the default size limit could be processed.
const minMemory = 64 << 20

// sizeUnits are the suffixes limits.memory accepts, binary and decimal.
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// parseMemory reads limits.memory: a percentage of the machine's memory
// (total() reports it), or a size with an optional unit.
func parseMemory(s string, total func() (int64, error)) (int64, error) {
	s = strings.TrimSpace(s)
	var n int64
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || pct <= 0 || pct > 100 {
			return 0, fmt.Errorf("%q is not a percentage between 0 and 100", s)
		}
		t, err := total()
		if err != nil {
			return 0, fmt.Errorf("%q: cannot read the machine's memory size (%v); give the budget in bytes, e.g. \"2GiB\"", s, err)
		}
		n = int64(float64(t) * pct / 100)
	} else {
		num, factor := s, int64(1)
		for _, u := range sizeUnits {
			if v, ok := strings.CutSuffix(s, u.suffix); ok {
				num, factor = strings.TrimSpace(v), u.factor
				break
			}
		}
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 || v > (1<<62)/factor {
			return 0, fmt.Errorf("%q is neither a size such as \"2GiB\" or \"536870912\" nor a share of the machine's memory such as \"25%%\"", s)
		}
		n = v * factor
	}
	if n < minMemory {
		return 0, fmt.Errorf("%q is %d bytes, less than the least budget of %d (64 MiB)", s, n, minMemory)
	}
	return n, nil
}

// physicalMemory is the memory the gateway may use: the machine's RAM
// (sysinfo(2)), or the cgroup's limit when one is lower (systemd's
// MemoryMax=, a container's limit), since a share of memory the process can
// never have would let the kernel kill it before the budget ran out.
func physicalMemory() (int64, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, err
	}
	total := int64(si.Totalram) * int64(si.Unit)
	if limit, ok := cgroupMemoryLimit(); ok && limit < total {
		total = limit
	}
	return total, nil
}

// cgroupMemoryLimit reads the memory.max of the cgroup (v2) the process is
// in; "max" or anything unreadable means no limit.
func cgroupMemoryLimit() (int64, bool) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(self)), "\n") {
		// cgroup v2: "0::/system.slice/smimegate.service"
		rest, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", filepath.Clean("/"+rest), "memory.max"))
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
