// Package floor is the performance floor of switchboard: a bare gnet v2 echo server that
// writes back whatever it reads and does nothing else. `switchboard bench echo --floor`
// runs the same load against it and against switchboard in one invocation, and reports
// the ratio; PERF.md's target is switchboard ≥ 90 % of the floor.
//
// # Concurrency
//
// Start and Stop may be called from any goroutine. The echo runs on gnet's event loops
// (one per GOMAXPROCS, like switchboard's default), each owning its connections.
//
// # Caveats
//
// The floor is only fair when it runs under the same CPU constraints as the server: the
// bench CLI starts it as a child process (`switchboard bench floor-server`). In-process
// use is for tests.
package floor

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"runtime"
	"syscall"

	"github.com/panjf2000/gnet/v2"
)

// Server is a running floor echo server.
type Server struct {
	h    *handler
	addr net.Addr
	done chan error
}

type handler struct {
	gnet.BuiltinEventEngine
	eng    gnet.Engine
	booted chan error
}

// OnBoot learns the bound address through a duplicate of the listener's descriptor (gnet
// does not expose it, and "127.0.0.1:0" only becomes a port here).
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	close(h.booted)
	return gnet.None
}

// OnTraffic echoes the bytes back verbatim: the whole floor.
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	b, _ := c.Next(-1)
	_, _ = c.Write(b)
	return gnet.None
}

// Start listens on listen (for example "127.0.0.1:0") and returns once it accepts
// connections.
func Start(listen string) (*Server, error) {
	h := &handler{booted: make(chan error)}
	s := &Server{h: h, done: make(chan error, 1)}
	go func() {
		s.done <- gnet.Run(h, "tcp://"+listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(runtime.GOMAXPROCS(0)),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReusePort(false),
			gnet.WithLogger(quietLogger{}))
	}()
	select {
	case <-h.booted:
	case err := <-s.done:
		if err == nil {
			err = errors.New("floor: gnet stopped before booting")
		}
		return nil, err
	}
	fd, err := h.eng.Dup()
	if err != nil {
		_ = s.Stop(context.Background())
		return nil, fmt.Errorf("floor: dup listener: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	_ = syscall.Close(fd)
	if err != nil {
		_ = s.Stop(context.Background())
		return nil, fmt.Errorf("floor: getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		s.addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *syscall.SockaddrInet6:
		s.addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	default:
		_ = s.Stop(context.Background())
		return nil, fmt.Errorf("floor: unexpected socket address %T", sa)
	}
	return s, nil
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.addr }

// Stop stops the engine and waits for gnet.Run to return.
func (s *Server) Stop(ctx context.Context) error {
	err := s.h.eng.Stop(ctx)
	select {
	case runErr := <-s.done:
		if err == nil {
			err = runErr
		}
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// quietLogger keeps gnet's start-up chatter off stdout, where `bench floor-server` reports
// its address; warnings and errors go to the standard logger (stderr).
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)     {}
func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Warnf(f string, a ...any)  { log.Printf("floor: gnet: "+f, a...) }
func (quietLogger) Errorf(f string, a ...any) { log.Printf("floor: gnet: "+f, a...) }
func (quietLogger) Fatalf(f string, a ...any) { log.Printf("floor: gnet: fatal: "+f, a...) }
