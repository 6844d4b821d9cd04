package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Connection failures are counted by cause, so that a run that runs out of local ports or
// open files says so instead of reporting a pile of timeouts. A cause is the phase it
// happened in and what happened: "dial EADDRNOTAVAIL", "handshake timeout".

// Phases of opening one connection.
const (
	phaseDial      = "dial"      // connect(2)
	phaseHandshake = "handshake" // HELLO → WELCOME, and REGISTER for route names
)

// causeNotAttempted counts the connections never dialled because the connecting phase
// ran past its bound (--timeout + conns/ramp).
const causeNotAttempted = "not attempted (connecting phase over)"

// openError is a failure to open one connection, with the phase it happened in.
type openError struct {
	phase string
	err   error
}

func (e *openError) Error() string { return e.phase + ": " + e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

// errnoCauses are the system errors named in causes, in the order they are checked.
var errnoCauses = []struct {
	errno syscall.Errno
	name  string
}{
	{syscall.EADDRNOTAVAIL, "EADDRNOTAVAIL"},
	{syscall.EADDRINUSE, "EADDRINUSE"},
	{syscall.ECONNREFUSED, "ECONNREFUSED"},
	{syscall.ECONNRESET, "ECONNRESET"},
	{syscall.EPIPE, "EPIPE"},
	{syscall.EMFILE, "EMFILE"},
	{syscall.ENFILE, "ENFILE"},
	{syscall.ENOBUFS, "ENOBUFS"},
	{syscall.ETIMEDOUT, "timeout"}, // the kernel gave up on SYN retries
}

// failCause classifies err, a failure to open a connection, as "PHASE CAUSE". An error
// that is not an *openError is taken as a dial error.
func failCause(err error) string {
	phase := phaseDial
	var oe *openError
	if errors.As(err, &oe) {
		phase = oe.phase
	}
	return phase + " " + causeOf(err)
}

// causeOf names the system error or condition behind err.
func causeOf(err error) string {
	for _, c := range errnoCauses {
		if errors.Is(err, c.errno) {
			return c.name
		}
	}
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return "other"
}

// causeHints explain the causes that have a usual reason on a load generator.
var causeHints = map[string]string{
	"EADDRNOTAVAIL": "no local port left for this source and target: the ephemeral range is used up, TIME_WAIT sockets included",
	"EADDRINUSE":    "the local address and port are taken (TIME_WAIT of an earlier run, or a bind that chose the port alone)",
	"ECONNREFUSED":  "nothing listens there, or its accept queue overflowed",
	"ECONNRESET":    "the server reset the connection",
	"EMFILE":        "this bench process is out of open files: split the connections over more --procs",
	"ENFILE":        "the system is out of open files",
	"ENOBUFS":       "the kernel is out of socket memory",
	"timeout":       "no answer within --timeout: a full accept queue drops SYNs, or the node is too busy to handshake",
	"EOF":           "the server closed the connection",
}

// causeHint returns the explanation of a "PHASE CAUSE" key, or "".
func causeHint(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == ' ' {
			return causeHints[key[i+1:]]
		}
	}
	return ""
}
