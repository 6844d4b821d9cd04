package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/backoff"
)

// connect --reconnect: every held connection has a watcher goroutine that reads (and
// discards) what arrives until the connection fails. A loss is a read error, a GOAWAY or
// an ERROR with CLOSING while the hold is on; closing our own connections at its end is
// not one. The watcher then dials another address, HELLOs and REGISTERs the connection's
// name again, as package client does, and the connection is held (pinged) again. A loss
// is one event, whatever happens until it is settled: re-registered (without --register:
// reconnected), the name lost (NAME_TAKEN), or still open when the hold ends. So
// lost = re-registered + names lost + not re-registered, always.

// reconnResult is one part's account of its losses (partResult.Reconnect); the parent
// merges the parts' with mergeReconnect.
type reconnResult struct {
	Lost         int `json:"lost"`
	Reconnected  int `json:"reconnected"`  // losses followed by a new socket and HELLO
	Reregistered int `json:"reregistered"` // losses settled by REGISTER OK (without a name: reconnected)
	NamesLost    int `json:"names_lost"`   // losses settled by NAME_TAKEN
	Pending      int `json:"pending"`      // losses not settled when the hold ended
	// ErrorsByCode counts the ERRORs answered to a reconnecting HELLO or REGISTER;
	// FailedByCause the attempts that failed otherwise ("PHASE CAUSE", see failCause).
	ErrorsByCode  map[string]int `json:"errors_by_code"`
	FailedByCause map[string]int `json:"failed_by_cause"`
	// ToReconnected and ToReregistered are the times from each loss to its new HELLO's
	// WELCOME and to its REGISTER OK.
	ToReconnected  *Histogram `json:"to_reconnected"`
	ToReregistered *Histogram `json:"to_reregistered"`
	// FirstLossNs is the part's first loss and ReregisteredAtNs every re-registration,
	// in ns on the parts' shared clock (Unix time): the parent measures the
	// re-registrations from the first loss of any part.
	FirstLossNs      int64   `json:"first_loss_ns,omitempty"`
	ReregisteredAtNs []int64 `json:"reregistered_at_ns,omitempty"`
}

func newReconnResult() *reconnResult {
	return &reconnResult{ErrorsByCode: map[string]int{}, FailedByCause: map[string]int{},
		ToReconnected: NewHistogram(), ToReregistered: NewHistogram()}
}

// ReconnectStats is Result.Reconnect: connect --reconnect's figures over every part.
type ReconnectStats struct {
	Lost            int            `json:"lost"`
	Reconnected     int            `json:"reconnected"`
	Reregistered    int            `json:"reregistered"`
	NamesLost       int            `json:"names_lost"`
	NotReregistered int            `json:"not_reregistered"` // losses not settled when the hold ended
	ErrorsByCode    map[string]int `json:"errors_by_code"`
	FailedByCause   map[string]int `json:"failed_by_cause"`
	// LossToReconnected and LossToReregistered: from each loss to the new connection's
	// WELCOME and to its REGISTER OK (without --register: the WELCOME).
	LossToReconnected  Durations `json:"loss_to_reconnected"`
	LossToReregistered Durations `json:"loss_to_reregistered"`
	// FirstLossToReregistered: from the first loss any part saw (a killed node's first
	// observable effect) to each re-registration: the takeover time of the whole run.
	FirstLossToReregistered Durations `json:"first_loss_to_reregistered"`
	FirstLossAt             time.Time `json:"first_loss_at,omitzero"`
}

// writeSummary writes the reconnect lines of the human summary; every one starts with
// "  reconnect" (scripts/cluster-bench.sh greps them).
func (s *ReconnectStats) writeSummary(w io.Writer) {
	fmt.Fprintf(w, "  reconnect    lost %d, reconnected %d, re-registered %d, names lost %d (NAME_TAKEN), not re-registered at the end %d\n",
		s.Lost, s.Reconnected, s.Reregistered, s.NamesLost, s.NotReregistered)
	if len(s.ErrorsByCode) > 0 {
		fmt.Fprintf(w, "  reconnect    errors%s\n", byCode(s.ErrorsByCode))
	}
	writeCauses(w, "  reconnect    ", s.FailedByCause)
	d := func(what string, x Durations) {
		fmt.Fprintf(w, "  reconnect    %-34s n=%d  p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", what, x.N, x.P50Ms, x.P99Ms, x.MaxMs)
	}
	d("loss to reconnected (HELLO)", s.LossToReconnected)
	d("loss to re-registered", s.LossToReregistered)
	if !s.FirstLossAt.IsZero() {
		d("first loss to re-registered", s.FirstLossToReregistered)
		fmt.Fprintf(w, "  reconnect    first loss at %s\n", s.FirstLossAt.Format("15:04:05.000"))
	}
}

// mergeReconnect adds up the parts' accounts (nil ones are skipped).
func mergeReconnect(parts []*reconnResult) *ReconnectStats {
	s := &ReconnectStats{ErrorsByCode: map[string]int{}, FailedByCause: map[string]int{}}
	toConn, toReg := NewHistogram(), NewHistogram()
	var first int64
	for _, r := range parts {
		if r == nil {
			continue
		}
		s.Lost += r.Lost
		s.Reconnected += r.Reconnected
		s.Reregistered += r.Reregistered
		s.NamesLost += r.NamesLost
		s.NotReregistered += r.Pending
		for k, v := range r.ErrorsByCode {
			s.ErrorsByCode[k] += v
		}
		for k, v := range r.FailedByCause {
			s.FailedByCause[k] += v
		}
		toConn.Merge(r.ToReconnected)
		toReg.Merge(r.ToReregistered)
		if r.FirstLossNs != 0 && (first == 0 || r.FirstLossNs < first) {
			first = r.FirstLossNs
		}
	}
	var since []time.Duration
	for _, r := range parts {
		if r == nil {
			continue
		}
		for _, at := range r.ReregisteredAtNs {
			since = append(since, time.Duration(at-first))
		}
	}
	s.LossToReconnected = durationsOf(toConn, s.Lost-s.Reconnected)
	missed := s.Lost - s.Reregistered
	s.LossToReregistered = durationsOf(toReg, missed)
	s.FirstLossToReregistered = summarize(since, missed)
	if first != 0 {
		s.FirstLossAt = time.Unix(0, first).UTC()
	}
	return s
}

// durationsOf summarises a histogram like summarize does a sample.
func durationsOf(h *Histogram, missed int) Durations {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Durations{N: int(h.Count()), P50Ms: ms(h.Percentile(50)), P99Ms: ms(h.Percentile(99)),
		MaxMs: ms(h.Max()), Missed: missed}
}

// heldSlot is one held connection under --reconnect.
type heldSlot struct {
	// cur is the connection the watcher owns (held, or being opened): the end of the hold
	// closes it. held is the one the ping loop writes to: nil while reconnecting, so that
	// no PING goes out before HELLO or REGISTER is answered.
	cur, held atomic.Pointer[sconn]
}

// reconnector is a part's --reconnect state during one hold.
type reconnector struct {
	p     *part
	dl    *dialer
	ctx   context.Context // the hold's: cancelled when it ends
	slots []heldSlot
	wg    sync.WaitGroup

	mu  sync.Mutex // guards res
	res *reconnResult
}

// watchAll starts a watcher for every held connection. at returns connection i to ping
// (nil: none now); end stops the watchers, closes every connection they hold and
// returns the part's account.
func (p *part) watchAll(ctx context.Context, conns []*sconn) (at func(int) *sconn, end func() *reconnResult) {
	ctx, cancel := context.WithCancel(ctx)
	r := &reconnector{p: p, ctx: ctx, slots: make([]heldSlot, len(conns)), res: newReconnResult()}
	// The connecting phase made one from the same source, or there is no connection.
	r.dl, _ = newDialer(p.spec.Source, p.cfg.Timeout)
	for i, c := range conns {
		s := &r.slots[i]
		s.cur.Store(c)
		s.held.Store(c)
		r.wg.Add(1)
		go r.watch(s, c.idx, max(c.idx, 0)%len(p.cfg.Addrs))
	}
	at = func(i int) *sconn { return r.slots[i].held.Load() }
	end = func() *reconnResult {
		cancel()
		// A watcher that installs a connection after this loop sees ctx cancelled and
		// closes it itself (see own).
		for i := range r.slots {
			if c := r.slots[i].cur.Load(); c != nil {
				c.close()
			}
		}
		r.wg.Wait()
		return r.res
	}
	return at, end
}

// own makes c the connection slot s's watcher holds or opens; false (c closed) when the
// hold has ended meanwhile.
func (r *reconnector) own(s *heldSlot, c *sconn) bool {
	s.cur.Store(c)
	if r.ctx.Err() != nil {
		c.close()
		return false
	}
	return true
}

// watch watches slot s (connection g, first on address addr) until the hold ends.
func (r *reconnector) watch(s *heldSlot, g, addr int) {
	defer r.wg.Done()
	var name string
	if r.p.names != nil {
		name = r.p.names[g]
	}
	for {
		c := s.cur.Load()
		waitLoss(c)
		s.held.Store(nil)
		c.close()
		if r.ctx.Err() != nil {
			return // our own close at the end of the hold
		}
		lostAt := r.p.clk.now()
		first := false
		r.count(func(res *reconnResult) {
			res.Lost++
			if res.FirstLossNs == 0 {
				res.FirstLossNs = lostAt
				first = true
			}
		})
		if first {
			profileStorm(r.ctx)
		}
		c, addr = r.recover(s, g, addr, name, lostAt)
		if c == nil {
			return
		}
		s.held.Store(c)
	}
}

// waitLoss reads c until the server closes it (or says it will) or a read fails.
func waitLoss(c *sconn) {
	for {
		f, err := c.fr.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case codec.TypeGoAway:
			return
		case codec.TypeError:
			if errorClosing(f.Body) {
				return
			}
		}
	}
}

// recover settles one loss of connection g, lost on address lost: it reconnects to
// another address with backoff until a connection is HELLOed and, with a name,
// REGISTERed. It returns that connection and its address, or nil when the loss is
// settled otherwise (name lost) or the hold ends first.
func (r *reconnector) recover(s *heldSlot, g, lost int, name string, lostAt int64) (*sconn, int) {
	cfg := r.p.cfg
	reconnected := false
	for attempt := 0; ; attempt++ {
		// Every attempt waits, the first too, as package client does: thousands of
		// connections lost at once do not all dial in the same millisecond.
		if !r.sleep(backoff.Jittered(client.DefaultReconnectMin, client.DefaultReconnectMax, attempt)) {
			r.count(func(res *reconnResult) { res.Pending++ })
			return nil, 0
		}
		addr := otherAddr(len(cfg.Addrs), lost)
		var c *sconn
		var err error
		if r.dl != nil {
			c, err = r.p.dial(r.ctx, r.dl, g, addr)
		} else {
			err = &openError{phaseDial, errNoDialer}
		}
		if err != nil {
			r.failed(0, err)
			continue
		}
		if !r.own(s, c) {
			r.count(func(res *reconnResult) { res.Pending++ })
			return nil, 0
		}
		if code, err := r.p.hello(c); err != nil {
			c.close()
			r.failed(code, err)
			continue
		}
		now := r.p.clk.now()
		if !reconnected {
			reconnected = true
			r.count(func(res *reconnResult) {
				res.Reconnected++
				res.ToReconnected.Record(time.Duration(now - lostAt))
			})
		}
		if name == "" {
			r.count(func(res *reconnResult) {
				res.Reregistered++
				res.ToReregistered.Record(time.Duration(now - lostAt))
				res.ReregisteredAtNs = append(res.ReregisteredAtNs, now)
			})
			return c, addr
		}
		switch r.reregister(c, name, lostAt) {
		case regOK:
			return c, addr
		case regNameLost, regHoldOver:
			c.close()
			return nil, 0
		}
		c.close() // regRetry: another connection, after the backoff
	}
}

// Outcomes of reregister.
const (
	regOK       = iota // REGISTER OK: counted
	regNameLost        // NAME_TAKEN: counted
	regHoldOver        // the hold ended first: counted as pending
	regRetry           // a failed attempt (counted): reconnect
)

// reregister REGISTERs name on c until the answer settles it: UNAVAILABLE and BUSY are
// asked again on the same connection after their retry-after (1 s without one).
func (r *reconnector) reregister(c *sconn, name string, lostAt int64) int {
	for {
		code, retry, err := r.p.register(c, name)
		now := r.p.clk.now()
		switch {
		case err == nil:
			r.count(func(res *reconnResult) {
				res.Reregistered++
				res.ToReregistered.Record(time.Duration(now - lostAt))
				res.ReregisteredAtNs = append(res.ReregisteredAtNs, now)
			})
			return regOK
		case code == codec.CodeNameTaken:
			r.count(func(res *reconnResult) {
				res.NamesLost++
				res.ErrorsByCode[code.String()]++
			})
			return regNameLost
		case code == codec.CodeUnavailable || code == codec.CodeBusy:
			r.count(func(res *reconnResult) { res.ErrorsByCode[code.String()]++ })
			if retry <= 0 {
				retry = time.Second
			}
			if !r.sleep(retry) {
				r.count(func(res *reconnResult) { res.Pending++ })
				return regHoldOver
			}
		case r.ctx.Err() != nil: // our own close at the end of the hold, most likely
			r.count(func(res *reconnResult) { res.Pending++ })
			return regHoldOver
		default:
			r.failed(code, &openError{phaseHandshake, err})
			return regRetry
		}
	}
}

// failed counts a failed attempt: an ERROR by its code, anything else by its cause.
func (r *reconnector) failed(code codec.ErrorCode, err error) {
	if r.ctx.Err() != nil {
		return // our own close at the end of the hold; the loss counts as pending
	}
	r.count(func(res *reconnResult) {
		if code != 0 {
			res.ErrorsByCode[code.String()]++
		} else {
			res.FailedByCause[failCause(err)]++
		}
	})
}

func (r *reconnector) count(f func(*reconnResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.res)
}

// sleep waits d; false if the hold ends first.
func (r *reconnector) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

var errNoDialer = errors.New("bench: no dialer for the source address")

// otherAddr picks a random address index of n other than lost (lost when n is 1).
func otherAddr(n, lost int) int {
	if n <= 1 {
		return lost
	}
	i := rand.IntN(n - 1)
	if i >= lost {
		i++
	}
	return i
}
