package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/backoff"
)

// Client is a connection to a switchboard node that reconnects when it is lost. Create it
// with Dial; all its methods are safe for concurrent use.
type Client struct {
	cfg         Config   // immutable after Dial; defaults applied
	addrs       []string // immutable after Dial
	log         *slog.Logger
	errNoAnswer error // cause of the RequestTimeout bound; immutable

	ctx    context.Context // cancelled by Close: aborts dials and backoff waits
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor goroutine
	closed atomic.Bool    // written under mu; read anywhere

	mu     sync.Mutex
	cur    *conn               // guarded by mu: newest installed connection; nil before the first
	usable bool                // guarded by mu: cur accepts new calls
	ready  chan struct{}       // guarded by mu: closed when cur becomes usable
	names  map[string]struct{} // guarded by mu: names to keep registered across reconnects
	state  State               // guarded by mu
}

// Dial connects to the first of addrs (host:port) that completes the handshake, trying them
// in order, once each, within ctx. On success the client keeps itself connected (unless
// Config.NoReconnect) until Close. On failure it returns every address's error joined; a
// refusal by the server is a *ServerError (errors.As), e.g. with codec.CodeUnauthorized.
func Dial(ctx context.Context, addrs []string, cfg Config) (*Client, error) {
	if len(addrs) == 0 {
		return nil, ErrNoAddrs
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.EnsureDefaults()
	c := &Client{
		cfg:   cfg,
		addrs: slices.Clone(addrs),
		log:   cfg.Logger,
		ready: make(chan struct{}),
		names: make(map[string]struct{}),
		errNoAnswer: fmt.Errorf("client: no outcome within RequestTimeout (%v): %w: %w",
			cfg.RequestTimeout, ErrTimeout, context.DeadlineExceeded),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.log.Debug("switchboard client config", "name", cfg.Name, "addrs", c.addrs,
		"dial_timeout", cfg.DialTimeout, "handshake_timeout", cfg.HandshakeTimeout,
		"request_timeout", cfg.RequestTimeout, "reconnect_min", cfg.ReconnectMin,
		"reconnect_max", cfg.ReconnectMax, "no_reconnect", cfg.NoReconnect, "max_frame", cfg.MaxFrame)

	var errs []error
	for i, addr := range c.addrs {
		cn, err := c.connect(ctx, addr)
		if err == nil {
			if _, ok := c.install(cn); ok {
				c.log.Info("switchboard connected", "addr", addr, "conn_id", cn.connID, "server_id", cn.serverID)
				c.setState(Connected)
				c.wg.Add(1)
				go c.supervise(cn, i)
				return c, nil
			}
			// It started closing (or draining) before it could be installed.
			cn.close(errors.New("client: connection lost right after the handshake"))
			cn.wg.Wait()
			err = cn.cause
		}
		errs = append(errs, fmt.Errorf("client: %s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	c.cancel()
	return nil, errors.Join(errs...)
}

// Close says GOODBYE, stops reconnecting, fails pending calls with ErrClosed and waits for
// every goroutine of the client to return. Later calls return ErrClosed. Close is
// idempotent and always returns nil; it waits at most about a second for queued frames to be
// written.
func (c *Client) Close() error {
	c.mu.Lock()
	already := c.closed.Load()
	c.closed.Store(true)
	cn := c.cur
	c.mu.Unlock()
	c.cancel()
	if !already && cn != nil {
		_ = cn.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		cn.shutdown(ErrClosed)
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-cn.done:
		case <-t.C:
		}
		t.Stop()
		cn.close(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// ConnID returns the server-assigned id of the current connection, or 0 while not connected.
func (c *Client) ConnID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable {
		return 0
	}
	return c.cur.connID
}

// ServerID returns the id of the node the client is connected to, or "" while not connected.
func (c *Client) ServerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable {
		return ""
	}
	return c.cur.serverID
}

// Addr returns the address of the current connection, or "" while not connected.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable {
		return ""
	}
	return c.cur.addr
}

// State returns the current state: Connected, Reconnecting or Closed.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Names returns the names the client keeps registered, sorted.
func (c *Client) Names() []string {
	c.mu.Lock()
	names := make([]string, 0, len(c.names))
	for n := range c.names {
		names = append(names, n)
	}
	c.mu.Unlock()
	slices.Sort(names)
	return names
}

func (c *Client) setState(s State) {
	c.mu.Lock()
	if s != NameLost {
		c.state = s
	}
	c.mu.Unlock()
	if fn := c.cfg.OnStateChange; fn != nil {
		fn(s)
	}
}

// connUnusable stops new calls from using cn. Called first thing when cn starts closing or
// draining, so a call refused by cn never finds it again in waitConn.
func (c *Client) connUnusable(cn *conn) {
	c.mu.Lock()
	cn.gone = true
	if c.cur == cn && c.usable {
		c.usable = false
		c.ready = make(chan struct{})
	}
	c.mu.Unlock()
}

// reReg is a REGISTER sent by install.
type reReg struct {
	name string
	corr uint32
	cl   *call
}

// install makes cn the current connection and queues a REGISTER for every kept name ahead
// of any other call on it. Taking the snapshot of names and installing happen under one
// lock; Register relies on that (see there). It fails if the client is closed or cn is
// already going away; the caller then closes cn.
func (c *Client) install(cn *conn) ([]reReg, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || cn.gone {
		return nil, false
	}
	regs := make([]reReg, 0, len(c.names))
	for name := range c.names {
		corr, cl, ok := cn.addPending(codec.TypeOK)
		if !ok {
			return nil, false
		}
		err := cn.send(context.Background(), false, func(b []byte) []byte {
			return codec.AppendName(b, codec.TypeRegister, corr, name)
		})
		if err != nil {
			return nil, false
		}
		regs = append(regs, reReg{name, corr, cl})
	}
	c.cur, c.usable = cn, true
	close(c.ready)
	return regs, true
}

// waitConn returns a connection that accepts calls, waiting while the client reconnects.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed.Load() {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if c.usable {
			cn := c.cur
			c.mu.Unlock()
			return cn, nil
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// supervise owns reconnection: it waits for the current connection to end, reaps its
// goroutines and dials the next one, until Close.
func (c *Client) supervise(cn *conn, idx int) {
	defer c.wg.Done()
	p := newPicker(c.addrs, idx)
	for {
		select {
		case <-cn.done:
		case <-c.ctx.Done():
			<-cn.done // Close closes the current connection
		}
		cn.wg.Wait()
		if c.closed.Load() {
			c.setState(Closed)
			return
		}
		p.note(cn, time.Now())
		if c.cfg.NoReconnect {
			c.giveUp("switchboard connection lost; not reconnecting", cn.addr, cn.cause)
			c.setState(Closed)
			return
		}
		if se := cn.closeErr; se != nil && se.Flags&codec.ErrFlagReconnect == 0 {
			c.giveUp("switchboard connection closed by the server without RECONNECT; not reconnecting", cn.addr, se)
			c.setState(Closed)
			return
		}
		c.setState(Reconnecting)
		if cn = c.reconnect(p); cn == nil {
			c.setState(Closed)
			return
		}
	}
}

// giveUp closes the client after its connection ended for cause, without reconnecting:
// calls return ErrClosed from now on. The caller then reports the state Closed.
func (c *Client) giveUp(msg, addr string, cause error) {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	c.log.Warn(msg, "addr", addr, "err", cause)
}

// reconnect dials until a connection is installed (returned) or the client is closed (nil):
// by Close, or by a server whose refusal closes without RECONNECT (a wrong token, say:
// PROTOCOL.md's checklist reconnects only when told so).
func (c *Client) reconnect(p *picker) *conn {
	for attempt := 0; ; attempt++ {
		addr, notBefore := p.next(time.Now())
		wait := backoff.Jittered(c.cfg.ReconnectMin, c.cfg.ReconnectMax, attempt)
		if d := time.Until(notBefore); d > wait {
			wait = d
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		cn, err := c.connect(c.ctx, addr)
		if err != nil {
			if c.ctx.Err() != nil {
				return nil
			}
			var se *ServerError
			if errors.As(err, &se) {
				if se.Flags&codec.ErrFlagClosing != 0 && se.Flags&codec.ErrFlagReconnect == 0 {
					c.giveUp("switchboard reconnect refused without RECONNECT; not reconnecting", addr, se)
					return nil
				}
				p.noteError(addr, se, time.Now())
			}
			c.log.Warn("switchboard reconnect failed", "addr", addr, "attempt", attempt+1, "err", err)
			continue
		}
		regs, ok := c.install(cn)
		if !ok {
			cn.close(ErrClosed)
			cn.wg.Wait()
			if c.closed.Load() {
				return nil
			}
			continue
		}
		p.connected(addr)
		c.log.Info("switchboard reconnected", "addr", addr, "conn_id", cn.connID, "server_id", cn.serverID,
			"names", len(regs))
		c.reregistered(cn, regs)
		return cn
	}
}

// reregistered waits for the REGISTERs queued by install and reports the outcome. A
// REGISTER the node cannot decide yet (UNAVAILABLE: a cluster's directory during a KV
// election or a partition; BUSY) is sent again after the server's retry-after, up to
// reregisterTries times, while the connection lasts.
func (c *Client) reregistered(cn *conn, regs []reReg) {
	lost := false
	defer func() {
		if lost {
			c.setState(NameLost)
		}
	}()
	for try := 1; ; try++ {
		var again []string
		var wait time.Duration
		lost = c.awaitRegs(cn, regs, &again, &wait) || lost
		if try == 1 {
			c.setState(Connected) // calls work meanwhile; the names come as the node decides
		}
		if len(again) == 0 || try == reregisterTries {
			for _, name := range again {
				c.log.Warn("switchboard re-register gave up: the node could not decide", "name", name, "tries", try)
			}
			break
		}
		t := time.NewTimer(max(wait, reregisterMinWait))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-cn.done:
			t.Stop()
			return // the supervisor deals with the connection, and registers again
		}
		regs = regs[:0]
		for _, name := range again {
			c.mu.Lock()
			_, kept := c.names[name] // not unregistered meanwhile
			c.mu.Unlock()
			if !kept {
				continue
			}
			corr, cl, ok := cn.addPending(codec.TypeOK)
			if !ok || cn.send(context.Background(), false, func(b []byte) []byte {
				return codec.AppendName(b, codec.TypeRegister, corr, name)
			}) != nil {
				return
			}
			regs = append(regs, reReg{name, corr, cl})
		}
	}
}

// Re-registration retries: at most reregisterTries rounds, at least reregisterMinWait apart
// (or the server's retry-after, if longer).
const (
	reregisterTries   = 30
	reregisterMinWait = 250 * time.Millisecond
)

// awaitRegs waits for regs' answers. Names the node could not decide yet are appended to
// again, with the longest retry-after in wait; it reports whether a name was lost.
func (c *Client) awaitRegs(cn *conn, regs []reReg, again *[]string, wait *time.Duration) bool {
	ctx, cancel := context.WithTimeoutCause(c.ctx, c.cfg.RequestTimeout, c.errNoAnswer)
	defer cancel()
	lost := false
	for _, r := range regs {
		_, err := cn.await(ctx, r.corr, r.cl)
		var se *ServerError
		switch {
		case err == nil:
		case errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBusy):
			*again = append(*again, r.name)
			if errors.As(err, &se) {
				*wait = max(*wait, se.RetryAfter)
			}
			c.log.Info("switchboard re-register: the node cannot decide yet; trying again", "name", r.name, "err", err)
		case errors.Is(err, ErrTimeout) && !isClosed(cn.done):
			// No outcome in time, the connection still up: a node deciding slowly (a
			// claim waiting on a node that does not answer, a KV election). Asked again,
			// rather than left unregistered on this connection until the next reconnect.
			*again = append(*again, r.name)
			c.log.Info("switchboard re-register: no outcome in time; trying again", "name", r.name, "err", err)
		case errors.Is(err, ErrNameTaken):
			c.mu.Lock()
			delete(c.names, r.name)
			c.mu.Unlock()
			lost = true
			c.log.Error("switchboard name lost: taken by another connection during the reconnect",
				"name", r.name, "err", err)
		default:
			// Disconnected or closed: the supervisor deals with the connection.
			c.log.Warn("switchboard re-register failed", "name", r.name, "err", err)
		}
	}
	return lost
}

// picker chooses the address of each reconnect attempt. Owned by the supervisor.
type picker struct {
	addrs     []string
	idx       int                  // index in addrs of the last address used
	preferred []string             // addresses the server suggested, tried first
	notBefore map[string]time.Time // addresses the server asked us to avoid until then
	rnd       *rand.Rand           // for spread; seeded per picker
}

func newPicker(addrs []string, idx int) *picker {
	return &picker{addrs: addrs, idx: idx, notBefore: make(map[string]time.Time),
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// suggest takes the addresses a GOAWAY or ERROR suggested as the next ones to try, with
// the first one chosen by spread.
func (p *picker) suggest(addrs []string) {
	p.preferred = spread(slices.Clone(addrs), p.rnd)
}

// spread moves one of addrs to the front, chosen at random with weights n, n-1, ..., 1 by
// position, and returns addrs. A server lists its peers least loaded first; if every
// client of a draining node took the first, they would all land on one node, which would
// then be the most loaded. Weighted by rank, the less loaded nodes still get more of them
// (with 5 peers: 33%, 27%, 20%, 13%, 7%). The rest keep their order, for the retries.
func spread(addrs []string, r *rand.Rand) []string {
	n := len(addrs)
	if n < 2 {
		return addrs
	}
	x := r.IntN(n * (n + 1) / 2) // a point in the weights n + (n-1) + ... + 1
	i := 0
	for w := n; x >= w; w-- {
		x -= w
		i++
	}
	first := addrs[i]
	copy(addrs[1:i+1], addrs[:i])
	addrs[0] = first
	return addrs
}

// note records the hints of a connection that ended: GOAWAY or a closing ERROR. Without
// either (the node died without a word: kill -9, a crash, a hang), the next rotation
// starts at a random one of the other configured addresses: otherwise every client of
// that node, given the same list, tried the same next address and all landed on one node.
func (p *picker) note(cn *conn, now time.Time) {
	if cn.goaway == nil && cn.closeErr == nil {
		if n := len(p.addrs); n > 2 {
			p.idx = (p.idx + p.rnd.IntN(n-1)) % n
		}
	}
	if g := cn.goaway; g != nil {
		p.block(cn.addr, now.Add(time.Duration(g.ReconnectAfterMs)*time.Millisecond))
		p.suggest(g.Addrs)
	}
	if se := cn.closeErr; se != nil {
		p.noteError(cn.addr, se, now)
	}
}

// noteError records the retry-after and try-other advice of an ERROR from addr.
func (p *picker) noteError(addr string, se *ServerError, now time.Time) {
	if se.RetryAfter > 0 {
		p.block(addr, now.Add(se.RetryAfter))
	}
	if se.Flags&codec.ErrFlagTryOther != 0 && len(se.Addrs) > 0 {
		p.suggest(se.Addrs)
	}
}

func (p *picker) block(addr string, until time.Time) {
	if until.After(p.notBefore[addr]) {
		p.notBefore[addr] = until
	}
}

func (p *picker) connected(addr string) {
	p.preferred = nil
	if i := slices.Index(p.addrs, addr); i >= 0 {
		p.idx = i
	}
}

// next returns the address to try and the earliest time to try it (zero: now). Suggested
// addresses come first, then the configured ones in rotation after the last one used;
// blocked addresses are skipped while another is available.
func (p *picker) next(now time.Time) (string, time.Time) {
	for a, t := range p.notBefore {
		if !t.After(now) {
			delete(p.notBefore, a)
		}
	}
	for len(p.preferred) > 0 {
		a := p.preferred[0]
		p.preferred = p.preferred[1:]
		if _, blocked := p.notBefore[a]; !blocked {
			return a, time.Time{}
		}
	}
	best := -1
	for i := 1; i <= len(p.addrs); i++ {
		j := (p.idx + i) % len(p.addrs)
		t, blocked := p.notBefore[p.addrs[j]]
		if !blocked {
			p.idx = j
			return p.addrs[j], time.Time{}
		}
		if best < 0 || t.Before(p.notBefore[p.addrs[best]]) {
			best = j
		}
	}
	p.idx = best
	return p.addrs[best], p.notBefore[p.addrs[best]]
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
