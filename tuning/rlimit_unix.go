//go:build unix

package tuning

import (
	"context"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// noFileLimit returns RLIMIT_NOFILE: the soft limit this process was started with, and
// the hard limit; Unknown where a value cannot be read.
//
// Getrlimit cannot tell the soft limit at start: since Go 1.19 the os package raises the
// soft limit to the hard one during init, so a process only ever sees its raised value
// (and so does /proc/self/limits). Go remembers the original and restores it in the
// children it starts (syscall.origRlimitNofile, Go 1.21+), so a child shell's `ulimit -Sn`
// prints the soft limit the host gave this process.
func noFileLimit() (soft, hard int64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return Unknown, Unknown
	}
	return softNoFileAtStart(), clampRlimit(uint64(rl.Max))
}

// softNoFileAtStart asks a child shell for its soft open-file limit, which Go set back to
// the one this process started with; Unknown when no shell answers within two seconds.
func softNoFileAtStart() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", "ulimit -Sn").Output()
	if err != nil {
		return Unknown
	}
	return parseUlimit(string(out))
}

// parseUlimit parses `ulimit -Sn` output: a number or "unlimited".
func parseUlimit(s string) int64 {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return math.MaxInt64
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return Unknown
	}
	return clampRlimit(n)
}

func clampRlimit(v uint64) int64 {
	if v > math.MaxInt64 { // RLIM_INFINITY
		return math.MaxInt64
	}
	return int64(v)
}
