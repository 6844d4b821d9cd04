//go:build unix

package bench

import "syscall"

// loadGenCPU is the user+system CPU seconds of this process and of its children that have
// been waited for (the --procs workers, once they have ended).
func loadGenCPU() float64 {
	var total float64
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		}
	}
	return total
}
