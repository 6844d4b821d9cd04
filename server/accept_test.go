package server

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// acceptQueue is how many connections wait in the kernel for the server's Accept:
// for a listening socket, TCP_INFO's unacked field is its accept queue's length.
func acceptQueue(t *testing.T, s *Server) int {
	t.Helper()
	rc, err := s.ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); serr == nil {
			n = int(info.Unacked)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// TestEnrollersOverlap: gnet's EnrollContext waits for the loop to register the
// connection. While the only loop is busy, the node keeps admitting connections until
// every enroller waits on the loop and the acceptor waits on them (enrollers+1), not one
// at a time; the rest wait in the kernel's accept queue, so what is admitted and not yet
// on a loop stays bounded. Once the loop is free, every client gets its WELCOME.
func TestEnrollersOverlap(t *testing.T) {
	s := startServer(t, Config{Loops: 1})
	busy, release := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release) // a failed test does not leave the loop stuck
		}
	}()
	s.onEachLoop(func(*loop) {
		close(busy)
		<-release
	})
	<-busy

	const n = 3 * enrollers
	peers := make([]*rawpeer.Peer, n)
	for i := range peers {
		peers[i] = rawpeer.Dial(t, s.Addr().String())
		peers[i].Write(codec.AppendHello(nil, 1, codec.Version, "overlap", ""))
	}
	var admitted int64
	var queued int
	defer func() {
		if t.Failed() {
			t.Logf("last seen: %d admitted, %d in the accept queue", admitted, queued)
		}
	}()
	waitFor(t, "the acceptor to admit enrollers+1 connections and the kernel to queue the rest", func() bool {
		admitted, queued = s.connCount.Load(), acceptQueue(t, s)
		return admitted == enrollers+1 && queued == n-(enrollers+1)
	})
	close(release)
	for _, p := range peers {
		p.Expect(codec.TypeWelcome)
	}
	if c := s.Stats().Connections; c != n {
		t.Errorf("Stats().Connections = %d after every WELCOME; want %d", c, n)
	}
}
