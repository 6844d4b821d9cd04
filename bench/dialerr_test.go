package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestFailCause(t *testing.T) {
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: &os.SyscallError{Syscall: op, Err: err}}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{opErr("connect", syscall.EADDRNOTAVAIL), "dial EADDRNOTAVAIL"},
		{opErr("bind", syscall.EADDRINUSE), "dial EADDRINUSE"},
		{opErr("connect", syscall.ECONNREFUSED), "dial ECONNREFUSED"},
		{opErr("socket", syscall.EMFILE), "dial EMFILE"},
		{opErr("socket", syscall.ENFILE), "dial ENFILE"},
		{opErr("connect", syscall.ETIMEDOUT), "dial timeout"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, "dial timeout"},
		{context.DeadlineExceeded, "dial timeout"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}, "dial canceled"},
		{&openError{phaseHandshake, os.ErrDeadlineExceeded}, "handshake timeout"},
		{&openError{phaseHandshake, io.EOF}, "handshake EOF"},
		{&openError{phaseHandshake, io.ErrUnexpectedEOF}, "handshake EOF"},
		{&openError{phaseHandshake, opErr("read", syscall.ECONNRESET)}, "handshake ECONNRESET"},
		{&openError{phaseHandshake, opErr("write", syscall.EPIPE)}, "handshake EPIPE"},
		{&openError{phaseDial, fmt.Errorf("wrapped: %w", opErr("connect", syscall.EADDRNOTAVAIL))}, "dial EADDRNOTAVAIL"},
		{errors.New("something else"), "dial other"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := failCause(tc.err); got != tc.want {
				t.Fatalf("failCause(%v) = %q; want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestCauseHint(t *testing.T) {
	for key, want := range map[string]bool{
		"dial EADDRNOTAVAIL": true, "handshake timeout": true, "dial other": false, causeNotAttempted: false,
	} {
		if got := causeHint(key) != ""; got != want {
			t.Errorf("causeHint(%q) present = %v; want %v", key, got, want)
		}
	}
}

// TestFailCauseRealRefusal classifies the error of a real dial to a closed port.
func TestFailCauseRealRefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, err = net.Dial("tcp", addr)
	if err == nil {
		t.Skip("something listens on the closed port")
	}
	if got := failCause(err); got != "dial ECONNREFUSED" {
		t.Fatalf("failCause(%v) = %q; want dial ECONNREFUSED", err, got)
	}
}
