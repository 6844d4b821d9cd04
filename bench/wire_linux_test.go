package bench

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDialerBindsAddressWithoutPort checks that a connection from a source address has
// IP_BIND_ADDRESS_NO_PORT set and really leaves from that address.
func TestDialerBindsAddressWithoutPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, tc := range []struct {
		source string
		want   int
	}{{"127.0.0.2", 1}, {"", 0}} {
		t.Run("source="+tc.source, func(t *testing.T) {
			dl, err := newDialer(tc.source, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := dl.dial(context.Background(), ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			rc, err := nc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			_ = rc.Control(func(fd uintptr) {
				got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort)
			})
			if gerr != nil || got != tc.want {
				t.Fatalf("IP_BIND_ADDRESS_NO_PORT = %d (%v); want %d", got, gerr, tc.want)
			}
			la := nc.LocalAddr().(*net.TCPAddr)
			if tc.source != "" && la.IP.String() != tc.source {
				t.Fatalf("local address %v; want %s", la, tc.source)
			}
			if la.Port == 0 {
				t.Fatalf("local port 0 after connect")
			}
		})
	}
}
