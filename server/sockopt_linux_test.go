package server

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// startServerOn is startServer on a listener the test made (StartListener).
func startServerOn(t testing.TB, cfg Config, ln net.Listener) *Server {
	t.Helper()
	return startServerWith(t, cfg, func(s *Server) error {
		if err := s.StartListener(ln); err != nil {
			_ = ln.Close()
			return err
		}
		return nil
	})
}

// listenBacklog is a loopback TCP listener with the given listen backlog (net.Listen
// always uses somaxconn), so that a test can fill the kernel's queues with a few
// connections.
func listenBacklog(t testing.TB, backlog int) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // FileListener dups it
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// silentFlood opens n connections to addr that never send anything, one after the other
// (so that without a deferral the acceptor keeps up and none is lost in a full queue),
// and returns once every connect has completed: the client side is established whether
// or not the server deferred it. They are closed when the test ends.
func silentFlood(t testing.TB, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("silent connection: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

// helloWithin connects, says HELLO at once and fails the test unless WELCOME comes back
// within d.
func helloWithin(t testing.TB, s *Server, name string, d time.Duration) {
	t.Helper()
	start := time.Now()
	p := rawpeer.Dial(t, s.Addr().String())
	p.Hello(name, "")
	if took := time.Since(start); took > d {
		t.Fatalf("%s: WELCOME after %v; want it within %v", name, took, d)
	}
}

// TestDeferAcceptSilentNotAccepted: with tcp-defer-accept, connections that send nothing
// are never accepted while the defer period lasts (no descriptor, no handshake slot, no
// accept), clients that say HELLO at once are welcomed promptly among them, and a client
// that waits before its HELLO, or sends it in pieces, is welcomed too.
func TestDeferAcceptSilentNotAccepted(t *testing.T) {
	s := startServer(t, Config{TCPDeferAccept: 30 * time.Second})
	const silent, clients = 100, 10
	silentFlood(t, s.Addr().String(), silent)
	for i := range clients {
		helloWithin(t, s, "client-"+strconv.Itoa(i), 5*time.Second)
	}
	// The accept queue is in order: had the silent ones been queued, they would have been
	// accepted before the clients that connected after them.
	if st := s.Stats(); st.Accepted != clients {
		t.Fatalf("accepted %d connections; want only the %d that said HELLO (%d silent ones deferred)",
			st.Accepted, clients, silent)
	}

	// A client that waits before saying HELLO (less than the handshake timeout) is
	// accepted with its HELLO, and one that sends a byte first is accepted with that byte.
	slow := rawpeer.Dial(t, s.Addr().String())
	time.Sleep(time.Second)
	slow.Hello("slow", "")
	hello := codec.AppendHello(nil, 1, codec.Version, "dribble", "")
	dribble := rawpeer.Dial(t, s.Addr().String())
	dribble.Write(hello[:1])
	time.Sleep(300 * time.Millisecond)
	dribble.Write(hello[1:])
	dribble.Expect(codec.TypeWelcome)
	if st := s.Stats(); st.Accepted != clients+2 {
		t.Fatalf("accepted %d; want %d", st.Accepted, clients+2)
	}
}

// TestDeferAcceptQueueFull: more silent connections than the listen backlog. The
// kernel's queue of deferred connections holds about the backlog; past it, SYN cookies
// complete the rest at once and they are accepted like any connection (they time out in
// the handshake). Clients that connect meanwhile get in promptly, through cookies, and
// the deferred ones stay out.
func TestDeferAcceptQueueFull(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syncookies"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Skip("needs net.ipv4.tcp_syncookies = 1 (the kernel's default)")
	}
	const backlog, silent, clients = 16, 100, 10
	s := startServerOn(t, Config{TCPDeferAccept: 30 * time.Second}, listenBacklog(t, backlog))
	silentFlood(t, s.Addr().String(), silent)
	for i := range clients {
		helloWithin(t, s, "client-"+strconv.Itoa(i), 5*time.Second)
	}
	// About backlog+1 are deferred; the rest came through cookies. Without the deferral,
	// the connections that found the accept queue full are in after the kernel's first
	// SYN-ACK retransmission, 1 s later: wait past it.
	time.Sleep(1500 * time.Millisecond)
	st := s.Stats()
	t.Logf("accepted %d of %d silent and %d clients", st.Accepted, silent, clients)
	if st.Accepted > clients+silent-backlog {
		t.Fatalf("accepted %d; want at most %d (%d silent, at least %d deferred)",
			st.Accepted, clients+silent-backlog, silent, backlog)
	}
}

// TestDeferAcceptAfterPeriod: a silent connection is accepted once the defer period has
// passed (the kernel's first SYN-ACK retransmission for 1 s, at about 1 s) and then gets
// the handshake timeout like any other: HANDSHAKE_TIMEOUT, not a silent drop.
func TestDeferAcceptAfterPeriod(t *testing.T) {
	s := startServer(t, Config{TCPDeferAccept: time.Second, HandshakeTimeout: 200 * time.Millisecond,
		TickInterval: 10 * time.Millisecond})
	start := time.Now()
	p := rawpeer.Dial(t, s.Addr().String())
	p.ExpectError(codec.CodeHandshakeTimeout)
	// Without the deferral the timeout comes after 200 ms.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("HANDSHAKE_TIMEOUT after %v; want the defer period (1 s) plus the handshake timeout", took)
	}
}

// serverSocket returns a descriptor of this process's end of client connection c (the
// server's socket: its local address is c's remote one and the other way round).
func serverSocket(t testing.TB, c net.Conn) int {
	t.Helper()
	la, ra := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	match := func(sa syscall.Sockaddr, a *net.TCPAddr) bool {
		in, ok := sa.(*syscall.SockaddrInet4)
		return ok && in.Port == a.Port && net.IP(in.Addr[:]).Equal(a.IP)
	}
	var fd int
	waitFor(t, "the server's socket of the connection", func() bool {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(l, "socket:") {
				continue
			}
			sn, err1 := syscall.Getsockname(n)
			pn, err2 := syscall.Getpeername(n)
			if err1 == nil && err2 == nil && match(sn, ra) && match(pn, la) {
				fd = n
				return true
			}
		}
		return false
	})
	return fd
}

// TestClientSocketOptions: an accepted connection has TCP_NODELAY unless tcp-delay is
// set, and TCP keepalive only when tcp-keep-alive asks for it (Go's listener would turn it
// on with 15 s otherwise).
func TestClientSocketOptions(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cfg           Config
		nodelay, keep int
		idle          int
	}{
		{"default", Config{}, 1, 0, -1},
		{"tcp-delay", Config{TCPDelay: true}, 0, 0, -1},
		{"tcp-keep-alive", Config{TCPKeepAlive: 30 * time.Second}, 1, 1, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg)
			p := connect(t, s, "c")
			fd := serverSocket(t, p.Conn)
			get := func(level, opt int) int {
				v, err := syscall.GetsockoptInt(fd, level, opt)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			if v := get(syscall.IPPROTO_TCP, syscall.TCP_NODELAY); (v != 0) != (tc.nodelay != 0) {
				t.Errorf("TCP_NODELAY %d; want %d", v, tc.nodelay)
			}
			if v := get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); (v != 0) != (tc.keep != 0) {
				t.Errorf("SO_KEEPALIVE %d; want %d", v, tc.keep)
			}
			if tc.idle > 0 {
				if v := get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); v != tc.idle {
					t.Errorf("TCP_KEEPIDLE %d; want %d", v, tc.idle)
				}
			}
		})
	}
}

// TestDeferAcceptConfig: tcp-defer-accept reaches the listener, rounded up by the kernel
// (30 s, the default, is 31 s: five SYN-ACK retransmissions); 0 leaves it off; it is
// bounded.
func TestDeferAcceptConfig(t *testing.T) {
	deferOf := func(s *Server) int {
		rc, err := s.ln.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		_ = rc.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	def := DefaultConfig()
	def.Loops = 1
	if v := deferOf(startServer(t, def)); v != 31 {
		t.Errorf("default config: TCP_DEFER_ACCEPT %d s on the listener; want 31 (30 s rounded up by the kernel)", v)
	}
	def.TCPDeferAccept = 0
	if v := deferOf(startServer(t, def)); v != 0 {
		t.Errorf("tcp-defer-accept 0: TCP_DEFER_ACCEPT %d s; want off", v)
	}
	if v := deferOf(startServer(t, Config{TCPDeferAccept: 2 * time.Second})); v != 3 {
		t.Errorf("tcp-defer-accept 2s: TCP_DEFER_ACCEPT %d s; want 3 (two retransmissions)", v)
	}
	for _, d := range []time.Duration{-time.Second, maxDeferAccept + time.Second} {
		c := DefaultConfig()
		c.TCPDeferAccept = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tcp-defer-accept") {
			t.Errorf("tcp-defer-accept %v: Validate = %v; want an error naming it", d, err)
		}
	}
}
