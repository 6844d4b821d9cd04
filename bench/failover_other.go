//go:build !unix

package bench

import (
	"errors"
	"syscall"
)

var (
	sigKill = syscall.Signal(9)
	sigTerm = syscall.Signal(15)
	sigStop = syscall.Signal(19)
	sigCont = syscall.Signal(18)
)

func signalPID(int, syscall.Signal) error {
	return errors.New("bench failover: signals need a unix system")
}

func pidAlive(int) bool { return false }
