//go:build !linux

package server

import (
	"net"
	"time"
)

const maxDeferAccept = 10 * time.Minute

// setDeferAccept does nothing: TCP_DEFER_ACCEPT is Linux's, and tcp-defer-accept is
// documented as Linux only (the listening log line shows tcp_defer_accept_s 0).
func setDeferAccept(*net.TCPListener, time.Duration) (int, error) { return 0, nil }

func synCookiesOff() bool { return false }
