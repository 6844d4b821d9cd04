package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/procstat"
)

// ScenarioFailover is the failover scenario. It has its own configuration
// (FailoverConfig): it drives Go clients (package client, which reconnect and register
// their names again), not raw connections, and kills or stops a node of a cluster.
const ScenarioFailover = "failover"

const failoverAbout = "Go clients (package client: reconnect, register again), one name each, spread over\n" +
	"the nodes of a cluster, send open-loop SEND+ACK and/or REQUEST to each other; one node\n" +
	"is killed (--kill-pid: SIGKILL), stopped (--stop-pid: SIGSTOP, SIGCONT after --stop-for)\n" +
	"or drained (--drain-pid: SIGTERM, a planned restart) at --kill-at. Reports the victim's\n" +
	"clients' reconnect times, the time until each of the victim's names is reachable again,\n" +
	"the accounting of every message (sent = OK + refused by code + no outcome; acknowledged\n" +
	"but never delivered; duplicates) and a scan of every surviving node's /cluster/names. A\n" +
	"message a killed or stopped victim itself acknowledged for one of its own connections\n" +
	"just before the signal (within 2 s) and that went away with it is counted apart, as\n" +
	"PROTOCOL.md allows; a drain has no such excuse. Exit 1 on a lost or duplicate message,\n" +
	"a request with two outcomes, a victim's name lost or never reachable again, a name\n" +
	"with two owners, or a scan that failed or found the views still inconsistent."

// foClient is one Go client of the run and the name it holds.
type foClient struct {
	name        string
	c           *client.Client // set before the traffic starts
	victim      atomic.Bool    // connected to the victim when it was signalled
	reconnectNs atomic.Int64   // since t0: connected elsewhere after the signal; 0: not yet
	reachNs     atomic.Int64   // since t0: first delivery of a message sent after the signal
}

// failoverRun is one run's shared state.
type failoverRun struct {
	cfg     FailoverConfig // immutable
	log     io.Writer      // safe for concurrent use
	t0      time.Time      // immutable: the run's origin; every *Ns is ns since t0
	startNs int64          // when the traffic started; written before the pacer starts
	recs    []msgRec       // indexed by message id; a record is written before its message is sent
	clients []*foClient    // immutable once dialled
	killNs  atomic.Int64   // when the victim was signalled; 0 before
	sent    atomic.Int64   // records used, set by the pacer as it returns
	foreign atomic.Int64
	skipped atomic.Int64
	lost    atomic.Int64 // NameLost events
	closers []io.Closer  // closed when the run ends (the client log)
}

func (r *failoverRun) since() int64 { return int64(time.Since(r.t0)) }

// toVictim reports whether m was addressed to a client connected to the signalled node,
// sent at most victimWindow before the signal and before that client was connected
// elsewhere: only the signalled node can have acknowledged it, for a connection that then
// went away with the node. Older messages had time to be written; losing one of them is
// a violation like any other.
func (r *failoverRun) toVictim(m *msgRec) bool {
	to, kill := m.to.Load(), r.killNs.Load()
	if kill == 0 || to < 0 || int(to) >= len(r.clients) {
		return false
	}
	c := r.clients[to]
	if !c.victim.Load() || r.cfg.DrainPID > 0 { // a drain delivers what it acknowledged
		return false
	}
	sent, rc := m.sentNs.Load(), c.reconnectNs.Load()
	return sent >= kill-int64(victimWindow) && (rc == 0 || sent < rc)
}

// logAckedLost logs the first few acknowledged SENDs that never arrived, excused or not,
// with what decides toVictim, so that a failing run says which messages it lost.
func (r *failoverRun) logAckedLost() {
	shown := 0
	for i := range r.recs[:r.sent.Load()] {
		m := &r.recs[i]
		if m.kind != foSend || m.outcome.Load() != outcomeOK || m.deliveries.Load() != 0 {
			continue
		}
		if shown++; shown > 5 {
			r.logf("(more acknowledged SENDs never arrived)")
			return
		}
		to := m.to.Load()
		victim, reconnect := false, int64(0)
		if to >= 0 && int(to) < len(r.clients) {
			victim, reconnect = r.clients[to].victim.Load(), r.clients[to].reconnectNs.Load()
		}
		r.logf("acknowledged, never arrived: id %d from client %d to client %d (on the signalled node: %v), sent %.3f s after the signal, addressee reconnected %.3f s after it (0: never); excused: %v",
			i, m.from, to, victim, float64(m.sentNs.Load()-r.killNs.Load())/1e9, float64(max(0, reconnect-r.killNs.Load()))/1e9, r.toVictim(m))
	}
}

// victimWindow: how long before the signal a message to one of the signalled node's
// connections may have been acknowledged and not yet written when the node died.
const victimWindow = 2 * time.Second

func (r *failoverRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%8.3f s  %s\n", time.Since(r.t0).Seconds(), fmt.Sprintf(format, args...))
}

// deliver counts a MESSAGE or INCOMING payload that arrived at client to.
func (r *failoverRun) deliver(to int, p []byte) {
	id, _, _, ok := parseFailoverPayload(p)
	if !ok || id >= uint64(len(r.recs)) {
		r.foreign.Add(1)
		return
	}
	rec := &r.recs[id]
	if rec.to.Load() != int32(to) {
		rec.misrouted.Add(1)
	}
	rec.deliveries.Add(1)
	if k := r.killNs.Load(); k != 0 && rec.sentNs.Load() >= k {
		r.clients[to].reachNs.CompareAndSwap(0, r.since())
	}
}

// RunFailover runs the scenario; progress lines go to log. The result is complete as far
// as the run got, also with an error.
func RunFailover(ctx context.Context, cfg FailoverConfig, log io.Writer) (*FailoverResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &FailoverResult{Config: cfg, StartedAt: time.Now().UTC(), Victim: cfg.Addrs[cfg.VictimIndex],
		Action: "kill", VictimPID: cfg.KillPID,
		ReachMethod: fmt.Sprintf("reachable: first delivery of a message sent after the signal, seen by the traffic; "+
			"each name receives ~%.3g msgs/s, so the resolution is ~%.0f ms", cfg.Rate/float64(cfg.Clients),
			1000*float64(cfg.Clients)/cfg.Rate)}
	switch {
	case cfg.StopPID > 0:
		res.Action, res.VictimPID = "stop", cfg.StopPID
	case cfg.DrainPID > 0:
		res.Action, res.VictimPID = "drain", cfg.DrainPID
	}
	capacity := int(cfg.Rate*cfg.Duration.Seconds()) + 1024
	r := &failoverRun{cfg: cfg, log: &lockedWriter{w: log}, t0: time.Now(), recs: make([]msgRec, capacity)}
	err := r.run(ctx, res)
	if err != nil {
		res.Error = err.Error()
		// Every call has returned on every path out of run.
		res.Send, res.Request = tally(r.recs[:r.sent.Load()], r.toVictim)
	}
	res.Violations = res.violations()
	return res, err
}

func (r *failoverRun) run(ctx context.Context, res *FailoverResult) error {
	cfg := r.cfg
	defer r.closeClients()
	if err := r.dial(ctx); err != nil {
		return err
	}
	r.logf("%d clients connected and registered over %d nodes; traffic starts", len(r.clients), len(cfg.Addrs))
	r.startNs = r.since()

	callCtx, stopCalls := context.WithCancel(ctx) // calls outlive the pacer, not the run
	defer stopCalls()
	var calls sync.WaitGroup
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		r.pace(callCtx, &calls)
	}()

	if !sleepCtx(ctx, cfg.KillAt) {
		<-paced
		calls.Wait()
		return ctx.Err()
	}
	victimAddr := cfg.Addrs[cfg.VictimIndex]
	for _, c := range r.clients {
		if c.c.Addr() == victimAddr {
			c.victim.Store(true)
			res.VictimClients++
		}
	}
	pid, sig := cfg.KillPID, sigKill
	switch {
	case cfg.StopPID > 0:
		pid, sig = cfg.StopPID, sigStop
	case cfg.DrainPID > 0:
		pid, sig = cfg.DrainPID, sigTerm
	}
	r.killNs.Store(r.since())
	res.KilledAtS = time.Duration(r.killNs.Load() - r.startNs).Seconds()
	if err := signalPID(pid, sig); err != nil {
		<-paced
		calls.Wait()
		return fmt.Errorf("signal %v to pid %d: %w", sig, pid, err)
	}
	r.logf("%s pid %d (%s), %d of its clients", sigName(sig), pid, victimAddr, res.VictimClients)
	if sig == sigStop {
		// Never leave the node stopped, whatever happens to this run.
		var contOnce sync.Once
		cont := func() {
			contOnce.Do(func() {
				_ = signalPID(pid, sigCont)
				res.ContinuedAtS = time.Duration(r.since() - r.startNs).Seconds()
				r.logf("SIGCONT pid %d", pid)
			})
		}
		defer cont()
		for end := time.Now().Add(2 * time.Second); !procstat.AllStopped(pid) && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		wake := time.NewTimer(cfg.StopFor)
		done := make(chan struct{})
		var waker sync.WaitGroup
		waker.Add(1)
		go func() {
			defer waker.Done()
			select {
			case <-wake.C:
			case <-ctx.Done():
			case <-done:
			}
			cont()
		}()
		defer func() { // before cont's own defer: the waker continues the node and returns
			close(done)
			waker.Wait()
			wake.Stop()
		}()
	}
	<-paced
	r.logf("traffic ended; waiting for the calls in flight")
	calls.Wait()
	r.awaitDeliveries(ctx)
	res.Send, res.Request = tally(r.recs[:r.sent.Load()], r.toVictim)
	r.logAckedLost()

	// The scan: every node but the victim (dead, or fencing itself after SIGCONT).
	var admins []string
	var addrs []string
	for i := range cfg.Addrs {
		if i != cfg.VictimIndex {
			admins, addrs = append(admins, cfg.Admins[i]), append(addrs, cfg.Addrs[i])
		}
	}
	r.logf("scanning the directory on %s", strings.Join(admins, ", "))
	res.Scan = scanUntil(ctx, admins, cfg.ScanTimeout, func() []scanClient {
		cs := make([]scanClient, len(r.clients))
		for i, c := range r.clients {
			addr, id := c.c.Addr(), c.c.ConnID()
			cs[i] = scanClient{Name: c.name, View: slices.Index(addrs, addr), Conn: id}
		}
		return cs
	})

	var reconnect, reach []time.Duration
	missedRe, missedReach := 0, 0
	k := r.killNs.Load()
	for _, c := range r.clients {
		if !c.victim.Load() {
			continue
		}
		if t := c.reconnectNs.Load(); t > 0 {
			reconnect = append(reconnect, time.Duration(t-k))
		} else {
			missedRe++
		}
		if t := c.reachNs.Load(); t > 0 {
			reach = append(reach, time.Duration(t-k))
		} else {
			missedReach++
		}
	}
	res.Reconnect, res.Reach = summarize(reconnect, missedRe), summarize(reach, missedReach)
	res.NamesLost = int(r.lost.Load())
	res.Skipped, res.Foreign = int(r.skipped.Load()), int(r.foreign.Load())
	if ctx.Err() != nil {
		return fmt.Errorf("run cut short (--timeout or a signal): %w", ctx.Err())
	}
	return nil
}

// dial connects and registers every client, 32 at a time.
func (r *failoverRun) dial(ctx context.Context) error {
	cfg := r.cfg
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
	victimAddr := cfg.Addrs[cfg.VictimIndex]
	logger := slog.New(slog.DiscardHandler)
	if cfg.ClientLog != "" {
		f, err := os.Create(cfg.ClientLog)
		if err != nil {
			return fmt.Errorf("--client-log: %w", err)
		}
		r.closers = append(r.closers, f)
		logger = slog.New(slog.NewTextHandler(&lockedWriter{w: f}, nil))
	}
	r.clients = make([]*foClient, cfg.Clients)
	for i := range r.clients {
		r.clients[i] = &foClient{name: fmt.Sprintf("fo-%s-%d", runID, i)}
	}
	sem := make(chan struct{}, 32)
	errs := make([]error, cfg.Clients)
	var wg sync.WaitGroup
	for i, fc := range r.clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k := len(cfg.Addrs)
			order := make([]string, 0, k)
			for j := range k {
				order = append(order, cfg.Addrs[(i+j)%k])
			}
			c, err := client.Dial(ctx, order, client.Config{
				Name: fc.name, Token: cfg.Token, DialTimeout: time.Second, HandshakeTimeout: time.Second, Logger: logger.With("client", i),
				RequestTimeout: cfg.RequestTimeout, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
				OnMessage: func(m client.Message) { r.deliver(i, m.Payload) },
				OnRequest: func(q *client.Request) {
					r.deliver(i, q.Payload)
					_ = q.Reply(q.Payload)
				},
				OnStateChange: func(s client.State) {
					switch s {
					case client.NameLost:
						r.lost.Add(1)
					case client.Connected:
						// killNs is stored after fc.c and fc.victim are: once it is set, both are
						// visible here.
						if r.killNs.Load() != 0 && fc.victim.Load() && fc.reconnectNs.Load() == 0 {
							if a := fc.c.Addr(); a != "" && a != victimAddr {
								fc.reconnectNs.CompareAndSwap(0, r.since())
							}
						}
					}
				},
			})
			if err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
				return
			}
			fc.c = c
			if err := c.Register(ctx, fc.name); err != nil {
				errs[i] = fmt.Errorf("client %d: register %s: %w", i, fc.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *failoverRun) closeClients() {
	defer func() {
		for _, c := range r.closers {
			_ = c.Close()
		}
	}()
	var wg sync.WaitGroup
	for _, c := range r.clients {
		if c != nil && c.c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.c.Close()
			}()
		}
	}
	wg.Wait()
}

// maxInFlight bounds the calls in flight; past it a message is skipped (counted).
const maxInFlight = 8192

// pace sends the open-loop traffic until Duration has passed since t0: each message from
// a random client to another random client's name, on a goroutine of its own.
func (r *failoverRun) pace(ctx context.Context, calls *sync.WaitGroup) {
	cfg := r.cfg
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	sem := make(chan struct{}, maxInFlight)
	next := 0
	for due := 0; ; {
		elapsed := time.Duration(r.since() - r.startNs)
		if elapsed >= cfg.Duration || ctx.Err() != nil {
			break
		}
		for target := int(elapsed.Seconds() * cfg.Rate); due < target && next < len(r.recs); due++ {
			select {
			case sem <- struct{}{}:
			default:
				r.skipped.Add(1)
				continue
			}
			id := next
			next++
			rec := &r.recs[id]
			from := rng.IntN(len(r.clients))
			to := rng.IntN(len(r.clients) - 1)
			if to >= from {
				to++
			}
			rec.from, rec.kind = int32(from), foSend
			if cfg.Mode == "request" || cfg.Mode == "mix" && rng.IntN(2) == 1 {
				rec.kind = foRequest
			}
			rec.to.Store(int32(to))
			rec.sentNs.Store(r.startNs + int64(float64(due)/cfg.Rate*1e9))
			calls.Add(1)
			go func() {
				defer calls.Done()
				defer func() { <-sem }()
				r.call(ctx, uint64(id))
			}()
		}
		time.Sleep(time.Millisecond)
	}
	r.sent.Store(int64(next))
}

// call sends message id and records its outcome.
func (r *failoverRun) call(ctx context.Context, id uint64) {
	rec := &r.recs[id]
	c := r.clients[rec.from].c
	name := r.clients[rec.to.Load()].name
	p := appendFailoverPayload(make([]byte, 0, r.cfg.Size), id, rec.from, rec.kind, r.cfg.Size)
	if rec.kind == foSend {
		rec.record(c.SendAck(ctx, name, p))
		return
	}
	reply, err := c.Request(ctx, name, p)
	if rid, _, _, ok := parseFailoverPayload(reply); err == nil && (!ok || rid != id) {
		rec.outcomes.Add(1)
		rec.outcome.Store(outcomeWrong)
		return
	}
	rec.record(err)
}

// awaitDeliveries waits, at most Grace, until every acknowledged SEND has arrived.
func (r *failoverRun) awaitDeliveries(ctx context.Context) {
	n := int(r.sent.Load())
	end := time.Now().Add(r.cfg.Grace)
	for time.Now().Before(end) && ctx.Err() == nil {
		missing := 0
		for i := range r.recs[:n] {
			rec := &r.recs[i]
			if rec.kind == foSend && rec.outcome.Load() == outcomeOK && rec.deliveries.Load() == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case sigKill:
		return "SIGKILL"
	case sigStop:
		return "SIGSTOP"
	case sigTerm:
		return "SIGTERM"
	}
	return sig.String()
}
