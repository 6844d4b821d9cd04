//go:build unix

package bench

import "syscall"

// Signals the failover scenario sends.
var (
	sigKill = syscall.SIGKILL
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
	sigTerm = syscall.SIGTERM
)

// signalPID sends sig to process pid.
func signalPID(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// pidAlive reports whether process pid exists (and may be signalled by us).
func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }
