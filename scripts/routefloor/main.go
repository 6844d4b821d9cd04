// Command routefloor is a floor for routed delivery, as bench/floor is for echo: a bare
// gnet v2 server that speaks just enough of the protocol for `switchboard bench echo` and
// `switchboard bench route` (SEND with ACK, and REQUEST/REPLY) and does nothing else: no
// limits, zones, breakers, bounded queues, metrics or timers, and a copy-on-write map for
// names. It keeps switchboard's write design, which routing needs to be fast at all:
// output collects during a poll round and goes out at its end, one write per connection
// (a callback that only answered its own peer writes at once), and messages for another
// event loop's connections go there once per round per loop, as one batch. Against it,
// `bench route` / `bench echo` shows what that design gives on this machine without
// switchboard's features (docs/BENCHMARKS.md, "A floor for routed delivery"):
//
//	go run ./scripts/routefloor --listen 127.0.0.1:0 [--loops N]
//
// It prints `routefloor listening {"addr":"HOST:PORT"}` and runs until interrupted;
// scripts/route-ab.sh takes it in place of a switchboard binary (ab-servers.sh).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
)

type server struct {
	gnet.BuiltinEventEngine
	eng   gnet.Engine
	loops sync.Map // gnet.EventLoop -> *floop
	// names is replaced whole on each REGISTER (copy on write): lookups take no lock and
	// do not allocate; registrations are few.
	names atomic.Pointer[map[string]*fconn]
	ids   atomic.Pointer[map[uint64]*fconn] // for REPLY tokens; copy on write too
	nmu   sync.Mutex
	next  atomic.Uint64
	addr  string
}

// cow sets (or, with remove, deletes if it is v) k in the map m points to, by replacing
// the map: readers load it without a lock.
func cow[K comparable](mu *sync.Mutex, m *atomic.Pointer[map[K]*fconn], k K, v *fconn, remove bool) {
	mu.Lock()
	defer mu.Unlock()
	old := *m.Load()
	next := make(map[K]*fconn, len(old)+1)
	for key, val := range old {
		next[key] = val
	}
	if !remove {
		next[k] = v
	} else if next[k] == v {
		delete(next, k)
	}
	m.Store(&next)
}

// target is the connection that holds name; without one it answers NO_ROUTE to fc.
func (s *server) target(fc *fconn, name []byte, corr uint32) *fconn {
	t, ok := (*s.names.Load())[string(name)]
	if !ok {
		fc.out = codec.AppendError(fc.out, corr, codec.ErrorBody{Code: codec.CodeNoRoute, Reason: "no such name"})
		return nil
	}
	return t
}

// floop is one event loop's state, touched only on that loop.
type floop struct {
	el    gnet.EventLoop
	dirty []*fconn
	// out[o] collects this round's messages for loop o's connections.
	out     map[*floop]*batch
	queued  bool
	flushFn gnet.Runnable
}

// batch is a round's messages from one loop to another: frames back to back, and for
// each its target and end offset.
type batch struct {
	buf  []byte
	to   []*fconn
	ends []int
}

var batches = sync.Pool{New: func() any { return new(batch) }}

type fconn struct {
	c    gnet.Conn
	lp   *floop
	id   uint64
	name string
	regs []string
	out  []byte
	mark bool // in lp.dirty
}

func (s *server) loopOf(el gnet.EventLoop) *floop {
	if v, ok := s.loops.Load(el); ok {
		return v.(*floop)
	}
	lp := &floop{el: el, out: map[*floop]*batch{}}
	lp.flushFn = gnet.RunnableFunc(func(context.Context) error { lp.flush(); return nil })
	v, _ := s.loops.LoadOrStore(el, lp)
	return v.(*floop)
}

// OnBoot prints the bound address, learnt through a duplicate of the listener's
// descriptor (gnet does not expose it), as `"addr":"HOST:PORT"` for scripts/ab-servers.sh.
func (s *server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	addr := s.addr
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			if a, ok := sa.(*syscall.SockaddrInet4); ok {
				addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
			}
		}
		_ = syscall.Close(fd)
	}
	fmt.Printf("routefloor listening {\"addr\":%q}\n", addr)
	return gnet.None
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	fc := &fconn{c: c, lp: s.loopOf(c.EventLoop()), id: s.next.Add(1)}
	c.SetContext(fc)
	cow(&s.nmu, &s.ids, fc.id, fc, false)
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, _ error) gnet.Action {
	fc := c.Context().(*fconn)
	for _, n := range fc.regs {
		cow(&s.nmu, &s.names, n, fc, true)
	}
	cow(&s.nmu, &s.ids, fc.id, fc, true)
	fc.c = nil
	return gnet.None
}

// touch queues fc's output for the round's end.
func (lp *floop) touch(fc *fconn) {
	if !fc.mark {
		fc.mark = true
		lp.dirty = append(lp.dirty, fc)
	}
	lp.queue()
}

func (lp *floop) queue() {
	if !lp.queued {
		lp.queued = true
		_ = lp.el.Execute(context.Background(), lp.flushFn)
	}
}

// flush is the round's end: batches to other loops, then one write per connection.
func (lp *floop) flush() {
	lp.queued = false
	for o, b := range lp.out {
		delete(lp.out, o)
		_ = o.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			o.land(b)
			return nil
		}))
	}
	for i, fc := range lp.dirty {
		lp.dirty[i] = nil
		fc.mark = false
		if fc.c != nil && len(fc.out) > 0 {
			_, _ = fc.c.Write(fc.out)
		}
		fc.out = fc.out[:0]
	}
	lp.dirty = lp.dirty[:0]
}

// to returns where a frame for t goes: its output on this loop, or this round's batch for
// its loop. Append the frame there, then call sent.
func (lp *floop) to(t *fconn) (*[]byte, *batch) {
	if t.lp == lp {
		return &t.out, nil
	}
	b := lp.out[t.lp]
	if b == nil {
		b = batches.Get().(*batch)
		lp.out[t.lp] = b
	}
	return &b.buf, b
}

// sent records the frame just appended for t (to).
func (lp *floop) sent(t *fconn, b *batch) {
	if b == nil {
		lp.touch(t)
		return
	}
	b.to = append(b.to, t)
	b.ends = append(b.ends, len(b.buf))
	lp.queue()
}

// land queues another loop's batch for this loop's connections.
func (lp *floop) land(b *batch) {
	start := 0
	for i, t := range b.to {
		if t.c != nil {
			t.out = append(t.out, b.buf[start:b.ends[i]]...)
			lp.touch(t)
		}
		start = b.ends[i]
	}
	b.buf, b.to, b.ends = b.buf[:0], b.to[:0], b.ends[:0]
	batches.Put(b)
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	fc := c.Context().(*fconn)
	lp := fc.lp
	in, _ := c.Peek(-1)
	used, routed := 0, false
	for {
		f, n, err := codec.Decode(in[used:], 0)
		if errors.Is(err, codec.ErrShort) {
			break
		}
		if err != nil {
			return gnet.Close
		}
		used += n
		switch f.Type {
		case codec.TypeHello:
			if h, err := codec.ParseHello(f.Body); err == nil {
				fc.name = string(h.Name)
			}
			fc.out = codec.AppendWelcome(fc.out, f.Corr, codec.Welcome{Version: codec.Version, ConnID: fc.id,
				MaxFrame: codec.DefaultMaxFrame, ServerID: []byte("routefloor")})
		case codec.TypeRegister:
			cow(&s.nmu, &s.names, string(f.Body), fc, false)
			fc.regs = append(fc.regs, string(f.Body))
			fc.out = codec.AppendFrame(fc.out, codec.TypeOK, 0, f.Corr, nil)
		case codec.TypePing:
			fc.out = codec.AppendFrame(fc.out, codec.TypePong, 0, f.Corr, nil)
		case codec.TypeEcho:
			fc.out = codec.AppendFrame(fc.out, codec.TypeEchoReply, 0, f.Corr, f.Body)
		case codec.TypeSend:
			name, payload, err := codec.ParseSend(f.Body)
			if err != nil {
				return gnet.Close
			}
			t := s.target(fc, name, f.Corr)
			if t == nil {
				continue
			}
			buf, b := lp.to(t)
			*buf = codec.AppendMessage(*buf, fc.id, fc.name, payload)
			lp.sent(t, b)
			routed = true
			if f.Flags&codec.FlagAck != 0 && f.Corr != 0 {
				fc.out = codec.AppendFrame(fc.out, codec.TypeOK, 0, f.Corr, nil)
			}
		case codec.TypeRequest:
			name, _, payload, err := codec.ParseRequest(f.Body)
			if err != nil {
				return gnet.Close
			}
			t := s.target(fc, name, f.Corr)
			if t == nil {
				continue
			}
			// The token is the requester's id and the corr: no table, no timeout.
			buf, b := lp.to(t)
			*buf = codec.AppendIncoming(*buf, fc.id<<32|uint64(f.Corr), fc.id, fc.name, payload)
			lp.sent(t, b)
			routed = true
		case codec.TypeReply:
			token, payload, err := codec.ParseReply(f.Body)
			if err != nil {
				return gnet.Close
			}
			t, ok := (*s.ids.Load())[token>>32]
			if !ok {
				continue
			}
			buf, b := lp.to(t)
			*buf = codec.AppendFrame(*buf, codec.TypeResponse, 0, uint32(token), payload)
			lp.sent(t, b)
			routed = true
		case codec.TypeGoodbye:
			_, _ = c.Discard(used)
			_, _ = c.Write(codec.AppendFrame(fc.out, codec.TypeGoodbye, 0, f.Corr, nil))
			fc.out = fc.out[:0]
			return gnet.Close
		default:
			return gnet.Close
		}
	}
	_, _ = c.Discard(used)
	// As switchboard does: a callback that only answered its own peer (echo) writes at
	// once; one that routed leaves its answers for the round's end, where they share a
	// write with what the round brings this connection.
	if len(fc.out) > 0 {
		if routed {
			lp.touch(fc)
		} else {
			_, _ = c.Write(fc.out)
			fc.out = fc.out[:0]
		}
	}
	return gnet.None
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	flag.Parse()
	s := &server{addr: *listen}
	noNames, noIDs := map[string]*fconn{}, map[uint64]*fconn{}
	s.names.Store(&noNames)
	s.ids.Store(&noIDs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = s.eng.Stop(context.Background())
	}()
	err := gnet.Run(s, "tcp://"+*listen,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(*loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReadBufferCap(64<<10),
		gnet.WithWriteBufferCap(64<<10))
	if err != nil {
		fmt.Fprintln(os.Stderr, "routefloor:", err)
		os.Exit(1)
	}
}
