package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/server"
)

// TestConnectReconnect holds 20 named connections over two nodes, stops one node during
// the hold, and checks that each of its connections came back on the other node with its
// name, that the account adds up, and that closing our own connections at the end of the
// hold is no loss.
func TestConnectReconnect(t *testing.T) {
	const conns, half = 20, 10
	s1 := testserver.Start(t, server.Config{Loops: runtime.GOMAXPROCS(0)})
	s2 := testserver.Start(t, server.Config{Loops: runtime.GOMAXPROCS(0)})
	addrs := s1.Addr().String() + "," + s2.Addr().String()
	type outcome struct {
		m      map[string]any
		stdout string
	}
	done := make(chan outcome, 1)
	var finished atomic.Bool
	go func() {
		defer finished.Store(true)
		var stdout, stderr bytes.Buffer
		// --duration: long enough for 10 reconnections on a loaded machine; the test waits
		// for events, not for it, until the hold ends by itself.
		code := mainWith([]string{"connect", "--addr", addrs, "--conns", strconv.Itoa(conns), "--procs", "2",
			"--register", "--reconnect", "--duration", "6s", "--json", "-"}, &stdout, &stderr, inProcess())
		var m map[string]any
		if code != 0 || json.Unmarshal(stdout.Bytes(), &m) != nil {
			t.Errorf("bench connect --reconnect exited %d; stderr:\n%s", code, stderr.String())
			m = nil
		}
		done <- outcome{m, stderr.String()}
	}()
	testserver.WaitFor(t, "every connection held with its name", func() bool {
		return s1.Stats().Names == half && s2.Stats().Names == half || finished.Load()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatalf("stopping node 1: %v", err)
	}
	sawAll := false
	testserver.WaitFor(t, "node 1's names registered again on node 2", func() bool {
		sawAll = s2.Stats().Names == conns
		return sawAll || finished.Load()
	})
	out := <-done
	m := out.m
	if m == nil {
		return
	}
	if !sawAll {
		t.Errorf("node 2 never had all %d names while the hold lasted", conns)
	}
	if !get(t, m, "config.reconnect").(bool) {
		t.Error("config.reconnect not true in the JSON")
	}
	rc := func(k string) int { return int(num(t, m, "reconnect."+k)) }
	lost, rereg, namesLost, pending := rc("lost"), rc("reregistered"), rc("names_lost"), rc("not_reregistered")
	if lost != half || rc("reconnected") != half || rereg != half || namesLost != 0 || pending != 0 {
		t.Errorf("lost %d, reconnected %d, re-registered %d, names lost %d, not re-registered %d; want node 1's %d lost (none at the end of the hold), all back",
			lost, rc("reconnected"), rereg, namesLost, pending, half)
	}
	if lost != rereg+namesLost+pending {
		t.Errorf("lost %d != re-registered %d + names lost %d + not re-registered %d", lost, rereg, namesLost, pending)
	}
	for _, d := range []string{"loss_to_reconnected", "loss_to_reregistered", "first_loss_to_reregistered"} {
		if n := rc(d + ".n"); n != lost {
			t.Errorf("%s.n = %d; want %d (one per loss)", d, n, lost)
		}
		if rc(d+".missing") != 0 {
			t.Errorf("%s.missing = %v; want 0", d, get(t, m, "reconnect."+d+".missing"))
		}
	}
	if s, _ := get(t, m, "reconnect.first_loss_at").(string); s == "" {
		t.Error("reconnect.first_loss_at missing")
	}
	if errs := get(t, m, "reconnect.errors_by_code").(map[string]any); len(errs) != 0 {
		t.Errorf("errors_by_code %v; want none", errs)
	}
	// The summary (on stderr with --json -) carries the lines scripts grep.
	for _, w := range []string{"  reconnect    lost 10, reconnected 10, re-registered 10, names lost 0 (NAME_TAKEN), not re-registered at the end 0",
		"  reconnect    first loss to re-registered"} {
		if !strings.Contains(out.stdout, w) {
			t.Errorf("summary lacks %q:\n%s", w, out.stdout)
		}
	}
	testserver.WaitFor(t, "names released after the hold", func() bool { return s2.Stats().Names == 0 })
}

// TestMergeReconnect merges two parts' accounts: the counts add up, the histograms merge,
// and the re-registrations are measured from the earlier part's first loss.
func TestMergeReconnect(t *testing.T) {
	ms := int64(time.Millisecond)
	t0 := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC).UnixNano()
	a := newReconnResult()
	a.Lost, a.Reconnected, a.Reregistered, a.Pending = 3, 3, 2, 1
	a.ErrorsByCode["UNAVAILABLE"] = 2
	a.FailedByCause["dial ECONNREFUSED"] = 1
	a.ToReconnected.Record(100 * time.Millisecond)
	a.ToReconnected.Record(120 * time.Millisecond)
	a.ToReconnected.Record(140 * time.Millisecond)
	a.ToReregistered.Record(200 * time.Millisecond)
	a.ToReregistered.Record(400 * time.Millisecond)
	a.FirstLossNs = t0 + 100*ms
	a.ReregisteredAtNs = []int64{t0 + 300*ms, t0 + 500*ms}
	b := newReconnResult()
	b.Lost, b.Reconnected, b.Reregistered, b.NamesLost = 2, 2, 1, 1
	b.ErrorsByCode["UNAVAILABLE"] = 1
	b.ErrorsByCode["NAME_TAKEN"] = 1
	b.ToReconnected.Record(150 * time.Millisecond)
	b.ToReconnected.Record(160 * time.Millisecond)
	b.ToReregistered.Record(200 * time.Millisecond)
	b.FirstLossNs = t0 + 50*ms // the run's first loss
	b.ReregisteredAtNs = []int64{t0 + 250*ms}

	tests := []struct {
		name  string
		parts []*reconnResult
		first int64 // ns after t0
		since []time.Duration
	}{
		{"two parts", []*reconnResult{a, b}, 50 * ms, []time.Duration{200 * time.Millisecond, 250 * time.Millisecond, 450 * time.Millisecond}},
		{"order does not matter, nil skipped", []*reconnResult{nil, b, a}, 50 * ms, []time.Duration{200 * time.Millisecond, 250 * time.Millisecond, 450 * time.Millisecond}},
		{"one part", []*reconnResult{a}, 100 * ms, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mergeReconnect(tt.parts)
			var want ReconnectStats
			for _, p := range tt.parts {
				if p != nil {
					want.Lost += p.Lost
					want.Reconnected += p.Reconnected
					want.Reregistered += p.Reregistered
					want.NamesLost += p.NamesLost
					want.NotReregistered += p.Pending
				}
			}
			if s.Lost != want.Lost || s.Reconnected != want.Reconnected || s.Reregistered != want.Reregistered ||
				s.NamesLost != want.NamesLost || s.NotReregistered != want.NotReregistered {
				t.Fatalf("counts %+v; want %+v", s, want)
			}
			if s.Lost != s.Reregistered+s.NamesLost+s.NotReregistered {
				t.Errorf("lost %d != re-registered + names lost + not re-registered (%d)", s.Lost, s.Reregistered+s.NamesLost+s.NotReregistered)
			}
			if got := s.FirstLossAt.UnixNano(); got != t0+tt.first {
				t.Errorf("first loss at %v; want %v", s.FirstLossAt, time.Unix(0, t0+tt.first).UTC())
			}
			if want := summarize(tt.since, s.Lost-s.Reregistered); s.FirstLossToReregistered != want {
				t.Errorf("first loss to re-registered %+v; want %+v", s.FirstLossToReregistered, want)
			}
			if s.LossToReconnected.N != s.Reconnected || s.LossToReregistered.N != s.Reregistered {
				t.Errorf("histogram counts %d and %d; want %d and %d", s.LossToReconnected.N, s.LossToReregistered.N,
					s.Reconnected, s.Reregistered)
			}
			if s.LossToReregistered.Missed != s.Lost-s.Reregistered || s.LossToReconnected.Missed != s.Lost-s.Reconnected {
				t.Errorf("missing %d and %d", s.LossToReconnected.Missed, s.LossToReregistered.Missed)
			}
		})
	}
	s := mergeReconnect([]*reconnResult{a, b})
	if s.ErrorsByCode["UNAVAILABLE"] != 3 || s.ErrorsByCode["NAME_TAKEN"] != 1 || s.FailedByCause["dial ECONNREFUSED"] != 1 {
		t.Errorf("errors %v, failures %v", s.ErrorsByCode, s.FailedByCause)
	}
	if s.LossToReregistered.MaxMs != 400 || s.LossToReconnected.MaxMs != 160 {
		t.Errorf("max loss to re-registered %v, to reconnected %v; want 400 and 160", s.LossToReregistered.MaxMs, s.LossToReconnected.MaxMs)
	}
	// Through a worker's pipe: the part's account survives JSON.
	line, err := json.Marshal(partMsg{Kind: "result", Result: &partResult{Reconnect: a}})
	if err != nil {
		t.Fatal(err)
	}
	var back partMsg
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	if got := mergeReconnect([]*reconnResult{back.Result.Reconnect, b}); got.FirstLossToReregistered != s.FirstLossToReregistered ||
		got.LossToReregistered != s.LossToReregistered {
		t.Errorf("after JSON: %+v; want %+v", got, s)
	}
	if got := mergeReconnect(nil); got.Lost != 0 || !got.FirstLossAt.IsZero() || got.FirstLossToReregistered.N != 0 {
		t.Errorf("no parts: %+v", got)
	}
}

func TestOtherAddr(t *testing.T) {
	for _, tt := range []struct{ n, lost int }{{1, 0}, {2, 0}, {2, 1}, {6, 0}, {6, 3}, {6, 5}} {
		seen := map[int]bool{}
		for range 200 {
			i := otherAddr(tt.n, tt.lost)
			if i < 0 || i >= tt.n || (tt.n > 1 && i == tt.lost) {
				t.Fatalf("otherAddr(%d, %d) = %d", tt.n, tt.lost, i)
			}
			seen[i] = true
		}
		if want := max(tt.n-1, 1); len(seen) != want {
			t.Errorf("otherAddr(%d, %d) picked %d addresses in 200 tries; want all %d others", tt.n, tt.lost, len(seen), want)
		}
	}
}

// fakeNode answers HELLO with WELCOME and each REGISTER, on any connection, with the
// next of its replies (OK when they run out).
type fakeNode struct {
	ln        net.Listener
	mu        sync.Mutex
	replies   []fakeReply
	conns     atomic.Int32
	registers atomic.Int32
}

// fakeReply is one answer to a REGISTER: OK for code 0, else an ERROR; after is called
// once it is written.
type fakeReply struct {
	code    codec.ErrorCode
	retryMs uint32
	after   func()
}

func startFakeNode(t *testing.T, replies []fakeReply) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{ln: ln, replies: replies}
	var wg sync.WaitGroup
	var open []net.Conn
	var openMu sync.Mutex
	t.Cleanup(func() {
		_ = ln.Close()
		openMu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		openMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n.conns.Add(1)
			openMu.Lock()
			open = append(open, nc)
			openMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.serve(nc)
			}()
		}
	}()
	return n
}

func (n *fakeNode) serve(nc net.Conn) {
	fr := codec.NewReader(nc, maxInbound, 1<<10)
	for {
		f, err := fr.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case codec.TypeHello:
			_, _ = nc.Write(codec.AppendWelcome(nil, f.Corr, codec.Welcome{Version: codec.Version, MaxFrame: codec.DefaultMaxFrame}))
		case codec.TypeRegister:
			n.registers.Add(1)
			n.mu.Lock()
			var r fakeReply
			if len(n.replies) > 0 {
				r, n.replies = n.replies[0], n.replies[1:]
			}
			n.mu.Unlock()
			if r.code == 0 {
				_, _ = nc.Write(codec.AppendFrame(nil, codec.TypeOK, 0, f.Corr, nil))
			} else {
				_, _ = nc.Write(codec.AppendError(nil, f.Corr, codec.ErrorBody{Code: r.code, RetryAfterMs: r.retryMs}))
			}
			if r.after != nil {
				r.after()
			}
		}
	}
}

// TestReconnectRefusals settles one loss against a node that answers REGISTER as each
// case says: UNAVAILABLE and BUSY are asked again on the same connection, NAME_TAKEN
// loses the name, another ERROR is a failed attempt (a new connection), and the end of
// the hold leaves the loss pending.
func TestReconnectRefusals(t *testing.T) {
	type want struct {
		held                                   bool // recover returned a connection
		conns, registers                       int32
		rereg, namesLost, pending, reconnected int
		errs                                   map[string]int
	}
	var cancelHold context.CancelFunc // the running case's
	tests := []struct {
		name    string
		replies []fakeReply
		want    want
	}{
		{"OK", nil, want{held: true, conns: 1, registers: 1, rereg: 1, reconnected: 1, errs: map[string]int{}}},
		{"UNAVAILABLE then OK", []fakeReply{{code: codec.CodeUnavailable, retryMs: 10}},
			want{held: true, conns: 1, registers: 2, rereg: 1, reconnected: 1, errs: map[string]int{"UNAVAILABLE": 1}}},
		{"BUSY without retry-after then OK", []fakeReply{{code: codec.CodeBusy}},
			want{held: true, conns: 1, registers: 2, rereg: 1, reconnected: 1, errs: map[string]int{"BUSY": 1}}},
		{"NAME_TAKEN", []fakeReply{{code: codec.CodeNameTaken}},
			want{conns: 1, registers: 1, namesLost: 1, reconnected: 1, errs: map[string]int{"NAME_TAKEN": 1}}},
		{"FORBIDDEN then OK on a new connection", []fakeReply{{code: codec.CodeForbidden}},
			want{held: true, conns: 2, registers: 2, rereg: 1, reconnected: 1, errs: map[string]int{"FORBIDDEN": 1}}},
		{"hold ends during retry-after", []fakeReply{{code: codec.CodeUnavailable, retryMs: 3_600_000, after: func() { cancelHold() }}},
			want{conns: 1, registers: 1, pending: 1, reconnected: 1, errs: map[string]int{"UNAVAILABLE": 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := startFakeNode(t, tt.replies)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelHold = cancel
			p := &part{cfg: &Config{Scenario: ScenarioConnect, Addrs: []string{node.ln.Addr().String()}, Timeout: 5 * time.Second},
				clk: newClock()}
			r := &reconnector{p: p, ctx: ctx, slots: make([]heldSlot, 1), res: newReconnResult()}
			r.dl, _ = newDialer("", p.cfg.Timeout)
			c, _ := r.recover(&r.slots[0], 0, 0, "svc", p.clk.now())
			if c != nil {
				defer c.close()
			}
			res, w := r.res, tt.want
			if (c != nil) != w.held || node.conns.Load() != w.conns || node.registers.Load() != w.registers {
				t.Errorf("held %v, %d connections, %d REGISTERs; want %v, %d, %d", c != nil, node.conns.Load(),
					node.registers.Load(), w.held, w.conns, w.registers)
			}
			if res.Reregistered != w.rereg || res.NamesLost != w.namesLost || res.Pending != w.pending || res.Reconnected != w.reconnected {
				t.Errorf("re-registered %d, names lost %d, pending %d, reconnected %d; want %d, %d, %d, %d",
					res.Reregistered, res.NamesLost, res.Pending, res.Reconnected, w.rereg, w.namesLost, w.pending, w.reconnected)
			}
			if res.Reregistered+res.NamesLost+res.Pending != 1 {
				t.Errorf("the loss was settled %d times", res.Reregistered+res.NamesLost+res.Pending)
			}
			if !maps.Equal(res.ErrorsByCode, w.errs) || len(res.FailedByCause) != 0 {
				t.Errorf("errors %v, failures %v; want %v and none", res.ErrorsByCode, res.FailedByCause, w.errs)
			}
			if int(res.ToReregistered.Count()) != res.Reregistered || len(res.ReregisteredAtNs) != res.Reregistered ||
				int(res.ToReconnected.Count()) != res.Reconnected {
				t.Errorf("%d/%d re-registration times, %d reconnection times", res.ToReregistered.Count(),
					len(res.ReregisteredAtNs), res.ToReconnected.Count())
			}
		})
	}
}

// TestReconnectValidate: the config key is only meaningful for connect.
func TestReconnectValidate(t *testing.T) {
	for _, tt := range []struct {
		scenario string
		ok       bool
	}{{ScenarioConnect, true}, {ScenarioEcho, false}, {ScenarioRoute, false}, {ScenarioSoak, false}, {ScenarioOverload, false}} {
		c := Config{Scenario: tt.scenario, Reconnect: true}
		c.EnsureDefaults()
		err := c.Validate()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "--reconnect")) {
			t.Errorf("%s with reconnect: %v; want ok %v", tt.scenario, err, tt.ok)
		}
	}
}
