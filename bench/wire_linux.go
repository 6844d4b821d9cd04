package bench

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT from linux/in.h (Linux 4.2), which
// package syscall does not define. (golang.org/x/sys/unix does; this saves the module a
// direct dependency for one constant.)
const ipBindAddressNoPort = 0x18

// bindNoPort is the dialer's Control: it sets IP_BIND_ADDRESS_NO_PORT on a socket that
// is about to be bound to a source address, so that bind(2) takes only the address and
// connect(2) picks the port. Without it, bind picks the port alone, without knowing the
// destination: Linux then hands out only odd ports (connect keeps the even ones), about
// 14.1K per source address with the default range, the search slows to ~1.2 s per 1,000
// binds once they run short, and a TIME_WAIT socket to any destination blocks its port.
// Chosen at connect time, a port only has to be free for this destination (one source
// address then reaches the whole range for each target), and with net.ipv4.tcp_tw_reuse
// (2, loopback only, by default) a TIME_WAIT of an earlier run can be reused.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
