package client

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// Errors raised by the client itself. Compare with errors.Is.
var (
	// ErrClosed is returned by every call after Close (or after the connection was lost with
	// Config.NoReconnect), and by calls that were pending when Close was called.
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected is matched by the error of a call whose connection was lost before
	// the answer arrived. The call may or may not have taken effect. The error also wraps
	// the cause, e.g. a *ServerError with ErrFlagClosing (errors.Is(err, ErrSlowConsumer)).
	ErrDisconnected = errors.New("client: disconnected")
	// ErrReplied is returned by Request.Reply after the first successful Reply.
	ErrReplied = errors.New("client: request already replied to")
	// ErrBadName is returned for an empty name or one longer than codec.MaxNameLen.
	ErrBadName = errors.New("client: bad name")
	// ErrProtocol is matched by errors caused by a server that broke the protocol
	// (malformed frame, unexpected answer type). The connection is dropped.
	ErrProtocol = errors.New("client: protocol violation by server")
	// ErrNoAddrs is returned by Dial when addrs is empty.
	ErrNoAddrs = errors.New("client: no addresses")
)

// Sentinels for the server's error codes: errors.Is(err, ErrNoRoute) is true when err is
// (or wraps) a *ServerError with codec.CodeNoRoute. ErrTimeout and ErrFrameTooLarge are also
// matched by the client's own timeouts and size checks.
var (
	ErrBadFrame           = codeSentinel(codec.CodeBadFrame)
	ErrFrameTooLarge      = codeSentinel(codec.CodeFrameTooLarge)
	ErrUnsupportedVersion = codeSentinel(codec.CodeUnsupportedVersion)
	ErrUnauthorized       = codeSentinel(codec.CodeUnauthorized)
	ErrHandshakeTimeout   = codeSentinel(codec.CodeHandshakeTimeout)
	ErrUnknownType        = codeSentinel(codec.CodeUnknownType)
	ErrBusy               = codeSentinel(codec.CodeBusy)
	ErrRateLimited        = codeSentinel(codec.CodeRateLimited)
	ErrQueueFull          = codeSentinel(codec.CodeQueueFull)
	ErrSlowConsumer       = codeSentinel(codec.CodeSlowConsumer)
	ErrCircuitOpen        = codeSentinel(codec.CodeCircuitOpen)
	ErrNoRoute            = codeSentinel(codec.CodeNoRoute)
	ErrNameTaken          = codeSentinel(codec.CodeNameTaken)
	ErrTimeout            = codeSentinel(codec.CodeTimeout)
	ErrShuttingDown       = codeSentinel(codec.CodeShuttingDown)
	ErrInternal           = codeSentinel(codec.CodeInternal)
	ErrHelloRequired      = codeSentinel(codec.CodeHelloRequired)
	ErrNotOwner           = codeSentinel(codec.CodeNotOwner)
	ErrForbidden          = codeSentinel(codec.CodeForbidden)
	ErrUnavailable        = codeSentinel(codec.CodeUnavailable)
)

// codeErrs maps a code to its sentinel; filled by codeSentinel during package init.
var codeErrs [codec.MaxCode + 1]error

func codeSentinel(code codec.ErrorCode) error {
	err := errors.New("switchboard: " + code.String())
	codeErrs[code] = err
	return err
}

// ServerError is an ERROR frame from the server. errors.Is(err, ErrXxx) matches the
// sentinel of its Code.
type ServerError struct {
	Code       codec.ErrorCode
	RetryAfter time.Duration    // wait at least this long before retrying; 0: no advice
	Flags      codec.ErrorFlags // ErrFlagClosing, ErrFlagReconnect, ErrFlagTryOther
	Reason     string           // short human-readable text from the server; may be empty
	Addrs      []string         // other nodes to try; usually empty
}

func newServerError(e codec.ErrorBody) *ServerError {
	return &ServerError{
		Code:       e.Code,
		RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond,
		Flags:      e.Flags,
		Reason:     e.Reason,
		Addrs:      e.Addrs,
	}
}

// Error returns "switchboard: CODE: reason" (or "switchboard: CODE" without a reason).
func (e *ServerError) Error() string {
	s := "switchboard: " + e.Code.String()
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is reports whether target is the sentinel of e.Code. A TIMEOUT answering a call (not the
// idle timeout that closes a connection) also matches context.DeadlineExceeded: the call
// ran out of its time on the server, as one that runs out of it here does.
func (e *ServerError) Is(target error) bool {
	if target == context.DeadlineExceeded {
		return e.Code == codec.CodeTimeout && e.Flags&codec.ErrFlagClosing == 0
	}
	return int(e.Code) < len(codeErrs) && codeErrs[e.Code] != nil && codeErrs[e.Code] == target
}
