package rig

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Header prints what the figures that follow were measured on: the
// machine's load matters on a shared host, so it is part of the result.
func Header(name string, params string) {
	load, _ := os.ReadFile("/proc/loadavg")
	fields := strings.Fields(string(load))
	if len(fields) > 3 {
		fields = fields[:3]
	}
	fmt.Printf("# %s  %s\n# %s, %d CPUs, %s, load average %s\n",
		name, time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.NumCPU(), params, strings.Join(fields, " "))
}

// Percentile returns the p-th percentile (0..100) of ds by the
// nearest-rank method; ds is sorted in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(p/100*float64(len(ds))+0.5) - 1
	rank = max(0, min(rank, len(ds)-1))
	return ds[rank]
}

// Verdict says whether ratio meets a target "at least" (or "at most").
func Verdict(ratio, target float64, atMost bool) string {
	if (!atMost && ratio >= target) || (atMost && ratio <= target) {
		return "met"
	}
	return "MISSED"
}

// MiB formats a byte count in MiB.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
