package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
)

func TestFailoverPayload(t *testing.T) {
	for _, size := range []int{failoverPayloadMin, 32, 100} {
		p := appendFailoverPayload(nil, 1<<40+7, 12345, foRequest, size)
		if len(p) != size {
			t.Errorf("size %d: payload of %d bytes", size, len(p))
		}
		id, from, kind, ok := parseFailoverPayload(p)
		if !ok || id != 1<<40+7 || from != 12345 || kind != foRequest {
			t.Errorf("size %d: parse = %d %d %d %v; want %d 12345 %d true", size, id, from, kind, ok, uint64(1<<40+7), foRequest)
		}
	}
	if _, _, _, ok := parseFailoverPayload(make([]byte, failoverPayloadMin-1)); ok {
		t.Error("a short payload parsed")
	}
}

// TestRecordOutcome: how a call's error is classified.
func TestRecordOutcome(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		outcome uint32
		what    string // code or cause
	}{
		{"ok", nil, outcomeOK, ""},
		{"refused", &client.ServerError{Code: codec.CodeNoRoute}, outcomeRefused, "NO_ROUTE"},
		{"server timeout", fmt.Errorf("wrapped: %w", &client.ServerError{Code: codec.CodeTimeout}), outcomeRefused, "TIMEOUT"},
		// The client's own REQUEST deadline matches ErrTimeout but is no ERROR frame.
		{"client deadline", fmt.Errorf("client: no outcome: %w: %w", client.ErrTimeout, context.DeadlineExceeded), outcomeLost, "timeout"},
		{"disconnected", fmt.Errorf("%w: eof", client.ErrDisconnected), outcomeLost, "disconnected"},
		{"closed", client.ErrClosed, outcomeLost, "closed"},
		{"other", errors.New("boom"), outcomeLost, "other"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r msgRec
			r.record(c.err)
			if got := r.outcome.Load(); got != c.outcome {
				t.Fatalf("outcome = %d; want %d", got, c.outcome)
			}
			var what string
			switch c.outcome {
			case outcomeRefused:
				what = codeName(r.code.Load())
			case outcomeLost:
				what = noOutcomeNames[r.cause.Load()]
			}
			if what != c.what {
				t.Errorf("classified as %q; want %q", what, c.what)
			}
		})
	}
}

// recSpec is a record of tally's table.
type recSpec struct {
	kind       uint8
	outcome    uint32
	code       uint32
	cause      uint32
	outcomes   int32
	deliveries int32
	misrouted  int32
	to         int32
}

func makeRecs(specs []recSpec) []msgRec {
	recs := make([]msgRec, len(specs))
	for i, s := range specs {
		r := &recs[i]
		r.kind = s.kind
		r.outcome.Store(s.outcome)
		r.code.Store(s.code)
		r.cause.Store(s.cause)
		r.outcomes.Store(s.outcomes)
		r.deliveries.Store(s.deliveries)
		r.misrouted.Store(s.misrouted)
		r.to.Store(s.to)
	}
	return recs
}

func TestTally(t *testing.T) {
	const noRoute, timeout = uint32(codec.CodeNoRoute), uint32(codec.CodeTimeout)
	for _, c := range []struct {
		name string
		recs []recSpec
		send SendAccount
		req  RequestAccount
	}{
		{"empty", nil, SendAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"send ok delivered", []recSpec{{kind: foSend, outcome: outcomeOK, outcomes: 1, deliveries: 1}},
			SendAccount{Sent: 1, OK: 1, Delivered: 1, Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"send acked never delivered", []recSpec{{kind: foSend, outcome: outcomeOK, outcomes: 1}},
			SendAccount{Sent: 1, OK: 1, AckedNotDelivered: 1, Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"send acked never delivered, to the signalled node", []recSpec{
			{kind: foSend, outcome: outcomeOK, outcomes: 1, to: 1},
			{kind: foSend, outcome: outcomeOK, outcomes: 1, to: 2},
		}, SendAccount{Sent: 2, OK: 2, AckedNotDelivered: 1, AckedLostWithTarget: 1, Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"send duplicates and misrouted", []recSpec{{kind: foSend, outcome: outcomeOK, outcomes: 1, deliveries: 3, misrouted: 1}},
			SendAccount{Sent: 1, OK: 1, Delivered: 1, Duplicates: 2, Misrouted: 1, Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"send refused, lost, pending", []recSpec{
			{kind: foSend, outcome: outcomeRefused, code: noRoute, outcomes: 1},
			{kind: foSend, outcome: outcomeRefused, code: noRoute, outcomes: 1, deliveries: 1},
			{kind: foSend, outcome: outcomeLost, cause: noOutcomeDisconnected, outcomes: 1, deliveries: 1},
			{kind: foSend, outcome: outcomeLost, cause: noOutcomeTimeout, outcomes: 1},
			{kind: foSend},
		}, SendAccount{Sent: 5, Delivered: 2, DeliveredWithoutOK: 2, RefusedButDelivered: 1,
			Refused:   map[string]int{"NO_ROUTE": 2},
			NoOutcome: map[string]int{"disconnected": 1, "timeout": 1, "pending": 1}},
			RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}},
		{"requests", []recSpec{
			{kind: foRequest, outcome: outcomeOK, outcomes: 1, deliveries: 1},
			{kind: foRequest, outcome: outcomeOK, outcomes: 2, deliveries: 2},
			{kind: foRequest, outcome: outcomeRefused, code: timeout, outcomes: 1, deliveries: 1},
			{kind: foRequest, outcome: outcomeWrong, outcomes: 1, deliveries: 1},
			{kind: foRequest, outcome: outcomeLost, cause: noOutcomeClosed, outcomes: 1},
		}, SendAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}},
			RequestAccount{Sent: 5, Answered: 2, Delivered: 4, Duplicates: 1, TwoOutcomes: 1, WrongAnswer: 1,
				Refused: map[string]int{"TIMEOUT": 1}, NoOutcome: map[string]int{"closed": 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Client 1 stands for a connection of the signalled node (toVictim).
			s, q := tally(makeRecs(c.recs), func(m *msgRec) bool { return m.to.Load() == 1 })
			if !reflect.DeepEqual(s, c.send) {
				t.Errorf("send = %+v; want %+v", s, c.send)
			}
			if !reflect.DeepEqual(q, c.req) {
				t.Errorf("request = %+v; want %+v", q, c.req)
			}
			// The accounting identity: sent = ok + refused + no outcome (+ wrong answer).
			if s.Sent != s.OK+sumCounts(s.Refused)+sumCounts(s.NoOutcome) {
				t.Errorf("send: %d != %d + %d + %d", s.Sent, s.OK, sumCounts(s.Refused), sumCounts(s.NoOutcome))
			}
			if q.Sent != q.Answered+sumCounts(q.Refused)+sumCounts(q.NoOutcome)+q.WrongAnswer {
				t.Errorf("request: %d != %d + %d + %d + %d", q.Sent, q.Answered, sumCounts(q.Refused), sumCounts(q.NoOutcome), q.WrongAnswer)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, x := range n {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, c := range []struct {
		in     []time.Duration
		missed int
		want   Durations
	}{
		{nil, 3, Durations{Missed: 3}},
		{ms(5), 0, Durations{N: 1, P50Ms: 5, P99Ms: 5, MaxMs: 5}},
		{ms(4, 1, 3, 2), 1, Durations{N: 4, P50Ms: 2, P99Ms: 4, MaxMs: 4, Missed: 1}},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0, Durations{N: 10, P50Ms: 5, P99Ms: 10, MaxMs: 10}},
	} {
		if got := summarize(c.in, c.missed); got != c.want {
			t.Errorf("summarize(%v, %d) = %+v; want %+v", c.in, c.missed, got, c.want)
		}
	}
}

// view builds a namesView: local "name=conn", remote "name=node/epoch/conn".
func view(node uint16, epoch uint64, local []string, remote []string) namesView {
	v := namesView{NodeID: node, Epoch: epoch}
	for _, l := range local {
		var name string
		var conn uint64
		name, rest, _ := strings.Cut(l, "=")
		fmt.Sscan(rest, &conn)
		v.Local = append(v.Local, struct {
			Name string `json:"name"`
			Conn uint64 `json:"conn"`
		}{name, conn})
	}
	for _, r := range remote {
		name, rest, _ := strings.Cut(r, "=")
		var n uint16
		var e, conn uint64
		fmt.Sscanf(rest, "%d/%d/%d", &n, &e, &conn)
		v.Remote = append(v.Remote, struct {
			Name  string `json:"name"`
			Node  uint16 `json:"node"`
			Epoch uint64 `json:"epoch"`
			Conn  uint64 `json:"conn"`
			Live  bool   `json:"live"`
		}{name, n, e, conn, true})
	}
	return v
}

func TestCompareViews(t *testing.T) {
	for _, c := range []struct {
		name    string
		views   []namesView
		clients []scanClient
		want    ScanResult // Nodes, Names, the counts and Consistent are compared
	}{
		{"consistent", []namesView{
			view(1, 10, []string{"a=101"}, []string{"b=2/20/201"}),
			view(2, 20, []string{"b=201"}, []string{"a=1/10/101"}),
		}, []scanClient{{Name: "a", View: 0, Conn: 101}, {Name: "b", View: 1, Conn: 201}, {Name: "c", View: -1}},
			ScanResult{Nodes: []uint16{1, 2}, Names: 2, Consistent: true}},
		{"two owners", []namesView{
			view(1, 10, []string{"a=101"}, nil),
			view(2, 20, []string{"a=201"}, nil),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, TwoOwners: 1, CacheDisagrees: 2}},
		{"cache points at the wrong connection", []namesView{
			view(1, 10, []string{"a=101"}, nil),
			view(2, 20, nil, []string{"a=1/10/102"}),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, CacheDisagrees: 1}},
		{"cache points at an old run", []namesView{
			view(1, 11, []string{"a=101"}, nil),
			view(2, 20, nil, []string{"a=1/10/101"}),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, CacheDisagrees: 1}},
		{"cache misses a name", []namesView{
			view(1, 10, []string{"a=101"}, nil),
			view(2, 20, nil, nil),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, CacheDisagrees: 1}},
		{"cache names a node that holds nothing", []namesView{
			view(1, 10, nil, []string{"a=2/20/201"}),
			view(2, 20, nil, nil),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, CacheDisagrees: 1}},
		{"dangling: the victim's entry", []namesView{
			view(1, 10, nil, []string{"a=3/30/301"}),
			view(2, 20, nil, []string{"a=3/30/301"}),
		}, nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, Dangling: 2}},
		{"orphaned: the victim's entry, known gone", func() []namesView {
			a, b := view(1, 10, nil, []string{"a=3/30/301"}), view(2, 20, nil, []string{"a=3/30/301"})
			a.Remote[0].Live, b.Remote[0].Live = false, false
			return []namesView{a, b}
		}(), nil, ScanResult{Nodes: []uint16{1, 2}, Names: 1, Orphaned: 2, Consistent: true}},
		{"client's name not on its node", []namesView{
			view(1, 10, []string{"a=101"}, nil),
			view(2, 20, nil, []string{"a=1/10/101"}),
		}, []scanClient{{Name: "a", View: 1, Conn: 201}},
			ScanResult{Nodes: []uint16{1, 2}, Names: 1, ClientNotLocal: 1}},
		{"client's name held by an older connection", []namesView{
			view(1, 10, []string{"a=101"}, nil),
			view(2, 20, nil, []string{"a=1/10/101"}),
		}, []scanClient{{Name: "a", View: 0, Conn: 102}},
			ScanResult{Nodes: []uint16{1, 2}, Names: 1, ClientNotLocal: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := compareViews(c.views, c.clients)
			if (got.Consistent != (len(got.Examples) == 0)) || got.Consistent != c.want.Consistent {
				t.Errorf("consistent %v with %d examples; want %v", got.Consistent, len(got.Examples), c.want.Consistent)
			}
			got.Examples = nil
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("compareViews = %+v; want %+v", got, c.want)
			}
		})
	}
}

func TestFailoverViolations(t *testing.T) {
	var r FailoverResult
	if v := r.violations(); len(v) != 0 {
		t.Errorf("violations of an empty result = %v", v)
	}
	r.Send.AckedNotDelivered, r.Request.TwoOutcomes, r.Scan.TwoOwners = 2, 1, 1
	r.Scan.CacheDisagrees = 5 // reported, not a violation
	want := []string{"2 SEND+ACK acknowledged but never delivered", "1 calls with two outcomes", "1 names with two owners"}
	if v := r.violations(); !reflect.DeepEqual(v, want) {
		t.Errorf("violations = %q; want %q", v, want)
	}

	// A scan that failed, or gave up inconsistent, is no pass; nor a lost name.
	var f FailoverResult
	f.Scan.Error = "context deadline exceeded"
	f.NamesLost, f.Reach.Missed = 3, 3
	want = []string{"3 victim clients' names lost on re-registration", "3 victim names never reachable again",
		"directory scan failed: context deadline exceeded"}
	if v := f.violations(); !reflect.DeepEqual(v, want) {
		t.Errorf("violations = %q; want %q", v, want)
	}
	var g FailoverResult
	g.Scan.Rounds, g.Scan.CacheDisagrees = 40, 2
	if v := g.violations(); len(v) != 1 || !strings.Contains(v[0], "still inconsistent") {
		t.Errorf("violations of a scan that gave up = %q", v)
	}
}

func TestFailoverValidate(t *testing.T) {
	base := func() FailoverConfig {
		return FailoverConfig{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Admins: []string{"127.0.0.1:3", "127.0.0.1:4"},
			VictimIndex: -1}
	}
	for _, c := range []struct {
		name string
		set  func(*FailoverConfig)
		want []string // substrings of the error; none: valid
	}{
		// Validate only checks that the pid exists (signal 0); the parent is one.
		{"valid", func(c *FailoverConfig) { c.KillPID = os.Getppid() }, nil},
		{"no victim", func(*FailoverConfig) {}, []string{"--kill-pid: give exactly one"}},
		{"both victims", func(c *FailoverConfig) { c.KillPID, c.StopPID = 1<<30, 1<<30 }, []string{"exactly one"}},
		{"stop without stop-for", func(c *FailoverConfig) { c.StopPID = 1 << 30 }, []string{"--stop-for"}},
		{"drain", func(c *FailoverConfig) { c.DrainPID = os.Getppid() }, nil},
		{"drain and kill", func(c *FailoverConfig) { c.KillPID, c.DrainPID = os.Getppid(), os.Getppid() }, []string{"exactly one"}},
		{"drain with stop-for", func(c *FailoverConfig) { c.DrainPID, c.StopFor = os.Getppid(), time.Second }, []string{"--stop-for: only with --stop-pid"}},
		{"admins mismatch", func(c *FailoverConfig) { c.Admins = c.Admins[:1] }, []string{"--admin: need one admin address per --addr"}},
		{"remote", func(c *FailoverConfig) { c.Addrs[0] = "10.0.0.1:1" }, []string{"--addr: 10.0.0.1:1 is not a loopback"}},
		{"bad mode and size", func(c *FailoverConfig) { c.Mode, c.Size = "both", 4 }, []string{"--mode", "--size"}},
		{"kill after the end", func(c *FailoverConfig) { c.KillAt = time.Minute }, []string{"--kill-at: must come before"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.set(&cfg)
			cfg.EnsureDefaults()
			err := cfg.Validate()
			if len(c.want) == 0 && err != nil {
				t.Errorf("Validate() = %v; want nil", err)
			}
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v; want an error containing %q", err, w)
				}
			}
		})
	}
}

// TestToVictim: an acknowledged SEND that never arrived is excused (AckedLostWithTarget)
// only if it went to a client of the signalled node, at most victimWindow before the
// signal, and before that client was connected elsewhere.
func TestToVictim(t *testing.T) {
	const kill = int64(10 * time.Second)
	victim, moved, other := &foClient{}, &foClient{}, &foClient{}
	victim.victim.Store(true)
	moved.victim.Store(true)
	moved.reconnectNs.Store(kill + int64(time.Second))
	r := &failoverRun{clients: []*foClient{victim, moved, other}}
	r.killNs.Store(kill)
	for _, c := range []struct {
		name string
		to   int32
		sent int64
		want bool
	}{
		{"to the signalled node, just before the signal", 0, kill - int64(time.Millisecond), true},
		{"to the signalled node, long before the signal", 0, kill - int64(victimWindow) - 1, false},
		{"to a client still without a new connection, after the signal", 0, kill + int64(time.Second), true},
		{"to a moved client, before it reconnected", 1, kill + int64(500*time.Millisecond), true},
		{"to a moved client, after it reconnected", 1, kill + int64(2*time.Second), false},
		{"to a client of another node", 2, kill - int64(time.Millisecond), false},
		{"out of range", 7, kill, false},
	} {
		var m msgRec
		m.to.Store(c.to)
		m.sentNs.Store(c.sent)
		if got := r.toVictim(&m); got != c.want {
			t.Errorf("%s: toVictim = %v; want %v", c.name, got, c.want)
		}
	}
	var m msgRec
	m.sentNs.Store(kill)
	r.killNs.Store(0)
	if r.toVictim(&m) {
		t.Error("excused before any signal")
	}
}
