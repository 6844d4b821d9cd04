package client

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/wait"
)

// fakeServer is a scripted switchboard node for tests: it speaks the wire format over
// 127.0.0.1:0, answers with simple default behaviour and records every frame it receives.
//
// Default behaviour by request name: REQUEST "echo" → RESPONSE with the payload; "jitter" →
// the same after a random delay of up to 2ms (answers arrive out of order); "timeout" →
// ERROR TIMEOUT; "never" → nothing. SEND with ack to "nobody" → ERROR NO_ROUTE, otherwise
// OK. REGISTER of a name in taken → NAME_TAKEN. UNREGISTER of a name this connection did not
// register → NOT_OWNER.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	addr string

	// Set before the first connection; read-only afterwards.
	welcome codec.Welcome
	token   string                                 // required HELLO token; "" accepts any
	taken   map[string]bool                        // names owned by "someone else"
	hook    func(fc *fakeConn, f codec.Frame) bool // runs first; true means handled
	// welcomeGate, when set, holds every WELCOME until it is closed, so a test can keep a
	// client in the middle of its handshake for as long as it needs.
	welcomeGate chan struct{}

	wg sync.WaitGroup

	mu       sync.Mutex
	conns    []*fakeConn   // guarded by mu
	frames   []codec.Frame // guarded by mu: every frame received after the handshake (copies)
	nextConn uint64        // guarded by mu
	closed   bool          // guarded by mu
}

type fakeConn struct {
	s     *fakeServer
	nc    net.Conn
	id    uint64
	wmu   sync.Mutex
	names map[string]bool // owned by the conn's goroutine
}

func newFakeServer(t testing.TB, setup func(s *fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, addr: ln.Addr().String(), taken: map[string]bool{}}
	s.welcome = codec.Welcome{Version: codec.Version, MaxFrame: codec.DefaultMaxFrame, MaxPending: 1000,
		ServerID: []byte("fake-" + s.addr)}
	if setup != nil {
		setup(s)
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.stop)
	return s
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.nextConn++
		fc := &fakeConn{s: s, nc: nc, id: s.nextConn, names: map[string]bool{}}
		s.conns = append(s.conns, fc)
		s.wg.Add(1)
		s.mu.Unlock()
		go fc.serve()
	}
}

// stop closes the listener and every connection and waits for the server's goroutines.
func (s *fakeServer) stop() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.mu.Unlock()
	s.ln.Close()
	for _, fc := range conns {
		fc.nc.Close()
	}
	s.wg.Wait()
}

// dropConns closes every open connection but keeps listening.
func (s *fakeServer) dropConns() {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, fc := range conns {
		fc.nc.Close()
	}
}

// lastConn returns the newest connection, or nil.
func (s *fakeServer) lastConn() *fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return nil
	}
	return s.conns[len(s.conns)-1]
}

// received returns copies of the frames of type t received so far.
func (s *fakeServer) received(t codec.Type) []codec.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []codec.Frame
	for _, f := range s.frames {
		if f.Type == t {
			out = append(out, f)
		}
	}
	return out
}

// registered returns the names of the REGISTER frames received so far.
func (s *fakeServer) registered() map[string]bool {
	names := map[string]bool{}
	for _, f := range s.received(codec.TypeRegister) {
		names[string(f.Body)] = true
	}
	return names
}

func (fc *fakeConn) write(b []byte) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.nc.Write(b) // errors show up on the read side
}

func (fc *fakeConn) writeError(corr uint32, e codec.ErrorBody) {
	fc.write(codec.AppendError(nil, corr, e))
}

func (fc *fakeConn) serve() {
	s := fc.s
	defer s.wg.Done()
	defer fc.nc.Close()
	var jitter sync.WaitGroup
	defer jitter.Wait()
	fr := codec.NewReader(fc.nc, codec.DefaultMaxFrame, 0)
	f, err := fr.Next()
	if err != nil || f.Type != codec.TypeHello {
		return
	}
	h, err := codec.ParseHello(f.Body)
	if err != nil {
		return
	}
	if s.token != "" && string(h.Token) != s.token {
		fc.writeError(0, codec.ErrorBody{Code: codec.CodeUnauthorized, Flags: codec.ErrFlagClosing, Reason: "bad token"})
		return
	}
	if s.welcomeGate != nil {
		<-s.welcomeGate // stop closes the connection; the next read fails then
	}
	w := s.welcome
	w.ConnID = fc.id
	fc.write(codec.AppendWelcome(nil, 0, w))
	for {
		f, err := fr.Next()
		if err != nil {
			return
		}
		f.Body = bytes.Clone(f.Body)
		s.mu.Lock()
		s.frames = append(s.frames, f)
		s.mu.Unlock()
		if s.hook != nil && s.hook(fc, f) {
			continue
		}
		switch f.Type {
		case codec.TypePing:
			fc.write(codec.AppendFrame(nil, codec.TypePong, 0, f.Corr, f.Body))
		case codec.TypeEcho:
			fc.write(codec.AppendFrame(nil, codec.TypeEchoReply, 0, f.Corr, f.Body))
		case codec.TypeRegister:
			name := string(f.Body)
			if s.taken[name] {
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeNameTaken, Reason: name})
				continue
			}
			fc.names[name] = true
			fc.write(codec.AppendFrame(nil, codec.TypeOK, 0, f.Corr, nil))
		case codec.TypeUnregister:
			name := string(f.Body)
			if !fc.names[name] {
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeNotOwner})
				continue
			}
			delete(fc.names, name)
			fc.write(codec.AppendFrame(nil, codec.TypeOK, 0, f.Corr, nil))
		case codec.TypeSend:
			name, _, _ := codec.ParseSend(f.Body)
			if f.Flags&codec.FlagAck == 0 || f.Corr == 0 {
				continue
			}
			if string(name) == "nobody" {
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeNoRoute, Reason: "no such name"})
				continue
			}
			fc.write(codec.AppendFrame(nil, codec.TypeOK, 0, f.Corr, nil))
		case codec.TypeRequest:
			name, _, payload, _ := codec.ParseRequest(f.Body)
			switch string(name) {
			case "echo":
				fc.write(codec.AppendFrame(nil, codec.TypeResponse, 0, f.Corr, payload))
			case "jitter":
				jitter.Add(1)
				go func() {
					defer jitter.Done()
					time.Sleep(time.Duration(payload[len(payload)-1]%3) * time.Millisecond) // reorders answers
					fc.write(codec.AppendFrame(nil, codec.TypeResponse, 0, f.Corr, payload))
				}()
			case "timeout":
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeTimeout, Reason: "no reply"})
			case "never":
			default:
				fc.writeError(f.Corr, codec.ErrorBody{Code: codec.CodeNoRoute})
			}
		case codec.TypeGoodbye:
			return
		}
	}
}

// waitFor is wait.For (polls cond until it holds or wait.Deadline passes).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.For(t, what, cond)
}

// closedAddr returns an address nobody listens on.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// stateLog records OnStateChange calls.
type stateLog struct {
	mu     sync.Mutex
	states []State
}

func (l *stateLog) add(s State) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.mu.Unlock()
}

func (l *stateLog) get() []State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]State(nil), l.states...)
}

func (l *stateLog) has(s State) bool {
	for _, x := range l.get() {
		if x == s {
			return true
		}
	}
	return false
}
