//go:build !linux

package server

import (
	"errors"
	"net"
	"time"
)

const maxDeferAccept = 10 * time.Minute

// setDeferAccept: TCP_DEFER_ACCEPT is Linux's; elsewhere tcp-defer-accept is refused at start.
func setDeferAccept(*net.TCPListener, time.Duration) (int, error) {
	return 0, errors.New("TCP_DEFER_ACCEPT is only supported on Linux")
}
