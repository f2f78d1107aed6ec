package rig

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the times in /proc/PID/stat (USER_HZ). Linux
// fixes it at 100 on every architecture Go supports; reading it properly
// would need sysconf(_SC_CLK_TCK) through cgo.
const clockTick = 10 * time.Millisecond

// procStat returns a process's parent, its own CPU time (user + system,
// all threads) and the CPU time of its children that it has waited for.
func procStat(pid int) (ppid int, own, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is parenthesised and may hold spaces; the fields
	// counted in proc(5) resume after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var v [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} {
		if v[k], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/%d/stat field %d: %w", pid, idx+3, err)
		}
	}
	return int(v[0]), time.Duration(v[1]+v[2]) * clockTick, time.Duration(v[3]+v[4]) * clockTick, nil
}

// CPUTime returns the CPU time pid has used so far, all its threads.
func CPUTime(pid int) (time.Duration, error) {
	_, own, _, err := procStat(pid)
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return own, nil
}

// TreeCPUTime returns the CPU time of root and its live children plus what
// its children that have exited used (root's cutime and cstime, once it has
// reaped them). Postfix's master is such a root: smtpd, cleanup, qmgr and
// smtp are its children, and they come and go (max_use). The difference of
// two readings is the CPU the whole instance spent in between.
func TreeCPUTime(root int) (time.Duration, error) {
	_, own, reaped, err := procStat(root)
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", root, err)
	}
	total := own + reaped
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == root {
			continue
		}
		ppid, own, _, err := procStat(pid)
		if err != nil || ppid != root {
			continue // gone meanwhile, or not one of root's
		}
		total += own
	}
	return total, nil
}

// PostfixMaster returns the pid of a Postfix instance's master, from
// QUEUE_DIR/pid/master.pid.
func PostfixMaster(queueDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(queueDir, "pid", "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("postfix master pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("postfix master pid %q: %w", b, err)
	}
	return pid, nil
}
