//go:build !linux

package bench

import "syscall"

// bindNoPort does nothing outside Linux, which is the only system with
// IP_BIND_ADDRESS_NO_PORT; the source address is then bound with an ephemeral port.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
