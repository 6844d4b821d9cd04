package server

import (
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxDeferAccept bounds tcp-defer-accept: the kernel counts it in SYN-ACK retransmissions
// (at most 255), and a silent connection should not sit in the kernel for longer.
const maxDeferAccept = 10 * time.Minute

// setDeferAccept sets TCP_DEFER_ACCEPT on ln to d, rounded up to whole seconds (the
// kernel's unit; it rounds further up to its SYN-ACK retransmission schedule), and
// returns what the kernel reports back, in seconds.
func setDeferAccept(ln *net.TCPListener, d time.Duration) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return 0, err
	}
	secs := int((d + time.Second - 1) / time.Second)
	var got int
	cerr := rc.Control(func(fd uintptr) {
		if err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, secs); err == nil {
			got, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return got, err
}

// synCookiesOff reports whether the kernel sends no SYN cookies (net.ipv4.tcp_syncookies
// 0): then a listen queue full of deferred connections drops new clients' SYNs.
func synCookiesOff() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syncookies")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}
