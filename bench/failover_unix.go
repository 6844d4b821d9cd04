//go:build unix

package bench

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Signals the failover scenario sends.
var (
	sigKill = syscall.SIGKILL
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// signalPID sends sig to process pid.
func signalPID(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// pidAlive reports whether process pid exists (and may be signalled by us).
func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// allStopped reports whether every thread of process pid is stopped (state T); false
// where /proc cannot tell.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			return false
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
