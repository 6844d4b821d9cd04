//go:build unix

package tuning

import (
	"math"
	"syscall"
)

// noFileLimit returns this process's RLIMIT_NOFILE, soft and hard; Unknown if unreadable.
func noFileLimit() (soft, hard int64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return Unknown, Unknown
	}
	clamp := func(v uint64) int64 {
		if v > math.MaxInt64 { // RLIM_INFINITY
			return math.MaxInt64
		}
		return int64(v)
	}
	return clamp(uint64(rl.Cur)), clamp(uint64(rl.Max))
}
