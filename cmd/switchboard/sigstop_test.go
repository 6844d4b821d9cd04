package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/procstat"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// sigstopNode is one `serve --cluster embedded` process of TestClusterSigstop.
type sigstopNode struct {
	p                     *proc
	id                    int
	route, addr, admin    string
	natsURL               string
	epoch                 uint64
	storeDir, clusterName string
}

// TestClusterSigstop (issue 11): one node of three is stopped (SIGSTOP: a hung process
// whose sockets stay open, the partition case) past its lease, then woken (SIGCONT).
//
//   - The Go clients whose names it held find the connection dead (no PONG), reconnect to
//     the other nodes and register their names again; a hung node is not dead to the
//     probe, so that succeeds only once its lease has expired (UNAVAILABLE until then,
//     which the client retries), never before — and the clients lose no name.
//   - A sender on node 1 reaches every name again.
//   - Woken, the node serves nothing stale: what a raw connection queued in its socket
//     while it was stopped (SEND+ACKs to the names that moved, REGISTERs) is refused,
//     although its event loop reads it before the fence timer runs, and a SEND+ACK node 1
//     forwarded to the raw connection's own name during the stop (its sender told
//     TIMEOUT) is not delivered; it fences itself, drains and exits 1.
//   - Restarted (a new epoch), it rejoins: a name registered on it is reached from node 1,
//     every node's lease shows zone GREEN, and every name has exactly one owner in the
//     KV — the connection its client holds now — and one node counting it as its own.
//
// Lease TTL 14 s, renew 1 s (fence limit 13 s), idle timeout 3 s (the clients ping every
// 0.5 s and give up after 1 s without PONG). A shorter lease does not do: the woken node's
// raft replicas start elections at once (their timers ran out while it was stopped),
// which unseats the KV's leaders, and the two live nodes then wait 4–9 s for a new
// election, without renewals; a lease of 6 s fenced them both. The stream leaders are
// moved off node 3 before it is stopped, so that the stop itself does not cost another
// election (scripts/cluster-bench.sh's sigstop phase leaves them where they are).
func TestClusterSigstop(t *testing.T) {
	if testing.Short() {
		t.Skip("three serve processes and a 15 s stop")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads thread states from /proc")
	}
	const (
		ttl     = 14 * time.Second
		renew   = time.Second
		holders = 6
		cname   = "sigstop"
	)
	began := time.Now()
	// Node 1 needs a route to be in cluster mode, but the others' route addresses are not
	// known before they listen: it is given one where nobody listens (connection refused;
	// nats-server retries it quietly), and the others node 1's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	_ = ln.Close()
	start := func(id int, routes, storeDir string) *sigstopNode {
		t.Helper()
		n := &sigstopNode{id: id, storeDir: storeDir, clusterName: cname}
		n.p = startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
			"--node-id", fmt.Sprint(id), "--cluster", "embedded", "--cluster-name", cname,
			"--cluster-listen", "127.0.0.1:0", "--cluster-routes", routes, "--cluster-store-dir", storeDir,
			"--cluster-lease-ttl", ttl.String(), "--cluster-lease-renew", renew.String(),
			"--idle-timeout", "3s", "--drain-period", "300ms")
		n.route = routeListen(t, n.p)
		t.Cleanup(func() { // before startBin's cleanup kills it
			if t.Failed() {
				dumpLog(t, n)
			}
		})
		return n
	}
	ready := func(n *sigstopNode) {
		t.Helper()
		line := waitLineWithin(t, n.p, `"msg":"cluster directory ready"`, 60*time.Second)
		n.natsURL = jsonField(t, line, "nats_client_url")
		fmt.Sscan(jsonField(t, line, "epoch"), &n.epoch)
		n.addr = jsonField(t, waitLineWithin(t, n.p, `"msg":"switchboard listening"`, 10*time.Second), "addr")
		n.admin = jsonField(t, waitLineWithin(t, n.p, `"msg":"admin listening"`, 10*time.Second), "addr")
	}
	n1 := start(1, nowhere, t.TempDir())
	n2 := start(2, n1.route, t.TempDir())
	n3 := start(3, n1.route, t.TempDir())
	for _, n := range []*sigstopNode{n1, n2, n3} {
		ready(n)
	}
	t.Logf("cluster ready after %v", time.Since(began).Round(time.Millisecond))

	// Holders: Go clients, each with one name, on node 3 first.
	type holder struct {
		c    *client.Client
		name string
		msgs chan string
	}
	var lostMu sync.Mutex
	var lost []string
	var hs []*holder
	ctx := context.Background()
	for i := range holders {
		h := &holder{name: fmt.Sprintf("h%d", i), msgs: make(chan string, 1024)}
		c, err := client.Dial(ctx, []string{n3.addr, n1.addr, n2.addr}, client.Config{
			Name: h.name, HandshakeTimeout: time.Second, RequestTimeout: 3 * time.Second,
			Logger:       slog.New(slog.NewTextHandler(tlog{t, h.name}, &slog.HandlerOptions{Level: slog.LevelInfo})),
			ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
			OnMessage: func(m client.Message) {
				select {
				case h.msgs <- string(m.Payload):
				default:
				}
			},
			OnStateChange: func(s client.State) {
				if s == client.NameLost {
					lostMu.Lock()
					lost = append(lost, h.name)
					lostMu.Unlock()
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		h.c = c
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Register(ctx, h.name); err != nil {
			t.Fatalf("register %s on node 3: %v", h.name, err)
		}
		hs = append(hs, h)
	}
	sender, err := client.Dial(ctx, []string{n1.addr}, client.Config{Name: "sender", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close() })
	seq := 0
	// reach sends SEND+ACK from node 1 to h until it is acknowledged and h's client got
	// that very message, by deadline.
	reach := func(h *holder, deadline time.Time) error {
		for {
			seq++
			payload := fmt.Sprintf("%s-%d", h.name, seq)
			err := sender.SendAck(ctx, h.name, []byte(payload))
			if err == nil {
				wait := time.NewTimer(2 * time.Second)
			recv:
				for {
					select {
					case got := <-h.msgs:
						if got == payload {
							wait.Stop()
							return nil
						}
					case <-wait.C:
						err = errors.New("acknowledged but not received")
						break recv
					}
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not reached from node 1: %w", h.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	reachAll := func(deadline time.Time) {
		t.Helper()
		for _, h := range hs {
			if err := reach(h, deadline); err != nil {
				t.Fatal(err)
			}
		}
	}
	reachAll(time.Now().Add(15 * time.Second))

	// No stream leader on node 3 (see the doc comment).
	nc, err := nats.Connect(n1.natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, bucket := range []string{"switchboard_names_" + cname, "switchboard_leases_" + cname} {
		moveLeader(t, nc, "KV_"+bucket, "node-3")
	}

	// A raw connection on node 3, which will queue frames in its socket while it is stopped.
	raw := rawpeer.Dial(t, n3.addr)
	raw.Hello("raw", "")
	// It holds a name of its own, which node 1 reaches (so node 1's cache has it).
	raw.Write(codec.AppendName(nil, codec.TypeRegister, 97, "raw-held"))
	if f := raw.Expect(codec.TypeOK); f.Corr != 97 {
		t.Fatalf("raw REGISTER: OK corr %d; want 97", f.Corr)
	}
	// Generous: right after the leaders moved, on a loaded machine, an attempt may end in
	// TIMEOUT (delivery unknown) and take the request timeout. Such a MESSAGE may still
	// arrive; the check after SIGCONT allows that many.
	var lastErr error
	beforeUnknown := 0
	// raw sends nothing else while node 1 polls, and the nodes' idle timeout is 3 s: raw
	// PINGs before every attempt, or node 3 closes it (TIMEOUT) and raw-held is gone for
	// good. That was the flake in fresh-clone runs with the cores busy: node 1 had not
	// seen the name within 3 s, and then never could (the diagnostics showed raw-held on
	// no node, node 3 with only the holders' names). A MESSAGE read here is one whose
	// SEND+ACK ended in TIMEOUT: the attempt that is acknowledged ends the poll.
	keepRaw := func() {
		raw.Write(codec.AppendFrame(nil, codec.TypePing, 0, 96, nil))
		for {
			f, err := raw.Read()
			if err != nil {
				t.Fatalf("raw, waiting for its PONG: %v", err)
			}
			switch {
			case f.Type == codec.TypePong && f.Corr == 96:
				return
			case f.Type == codec.TypeMessage && bytes.HasSuffix(f.Body, []byte("before")) && beforeUnknown > 0:
				beforeUnknown-- // delivered after all
			default:
				t.Fatalf("raw, waiting for its PONG: got %v corr %d", f.Type, f.Corr)
			}
		}
	}
	pollUntil(t, "node 1 to reach raw-held", 30*time.Second, func() bool {
		keepRaw()
		lastErr = sender.SendAck(ctx, "raw-held", []byte("before"))
		if errors.Is(lastErr, client.ErrTimeout) {
			beforeUnknown++
		}
		return lastErr == nil
	}, func() string {
		return fmt.Sprintf("last SEND+ACK: %v; %d ended in TIMEOUT\nnode 1: %s\nnode 3: %s", lastErr, beforeUnknown,
			clusterDiag(n1.admin, "raw-held"), clusterDiag(n3.admin, "raw-held"))
	})
	if f := raw.Expect(codec.TypeMessage); !bytes.HasSuffix(f.Body, []byte("before")) {
		t.Fatalf("raw got %q; want the MESSAGE before", f.Body)
	}

	n3.p.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = n3.p.cmd.Process.Signal(syscall.SIGCONT) }) // never left stopped
	// SIGSTOP takes effect thread by thread (a running one at its next kernel entry): wait
	// until every thread of node 3 is stopped, so that nothing below reaches it running.
	pollUntil(t, "every thread of node 3 to be stopped", 10*time.Second, func() bool { return procstat.AllStopped(n3.p.cmd.Process.Pid) })
	stopped := time.Now()
	// Queued now, while node 3 still held the names, and read by it only when it wakes:
	// SEND+ACKs to every holder, a REGISTER of a new name and of a moved one.
	var queued []byte
	for i, h := range hs {
		queued = codec.AppendSend(queued, codec.FlagAck, uint32(100+i), h.name, []byte("stale"))
	}
	queued = codec.AppendName(queued, codec.TypeRegister, 98, "raw-new")
	queued = codec.AppendName(queued, codec.TypeRegister, 99, hs[0].name)
	raw.Write(queued)
	// From node 1, a SEND+ACK to raw's name: forwarded to node 3 (its lease still live),
	// where it waits in the stopped node's sockets. The sender is told TIMEOUT; woken
	// past its lease, node 3 must not deliver it (it would be a message its sender was
	// told had no outcome, to a name node 3 may no longer own).
	if err := sender.SendAck(ctx, "raw-held", []byte("forwarded-stale")); !errors.Is(err, client.ErrTimeout) {
		t.Errorf("SEND+ACK from node 1 to a name on stopped node 3 = %v; want TIMEOUT", err)
	}

	// The holders reconnect to nodes 1 and 2 and get their names back once node 3's lease
	// has expired: at least TTL minus one renewal after the stop.
	for _, h := range hs {
		pollUntil(t, h.name+" to reconnect to node 1 or 2", 15*time.Second, func() bool {
			a := h.c.Addr()
			return a != "" && a != n3.addr
		})
	}
	t.Logf("every holder reconnected elsewhere %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))
	reachAll(stopped.Add(ttl + 20*time.Second))
	back := time.Since(stopped)
	t.Logf("every name reached from node 1 again %v after SIGSTOP (lease TTL %v)", back.Round(time.Millisecond), ttl)
	if back < ttl-renew {
		t.Errorf("names taken over %v after the stop, before node 3's lease could have expired (%v)", back, ttl-renew)
	}
	for _, h := range hs {
		if a := h.c.Addr(); a == n3.addr {
			t.Errorf("%s still on node 3 (%s) after being reached elsewhere", h.name, a)
		}
	}
	// Stopped past its lease (the 30 s of the issue scaled to this TTL): a second more.
	// Not a synchronisation: the length of the stop is what is tested.
	time.Sleep(time.Until(stopped.Add(ttl + renew)))

	n3.p.signal(t, syscall.SIGCONT)
	woke := time.Now()
	t.Logf("SIGCONT %v after SIGSTOP", woke.Sub(stopped).Round(time.Millisecond))
	// Whatever node 3 answers to what was queued, it is no OK: not for a SEND+ACK (the
	// names moved; its cache still shows their old connections) nor for a REGISTER.
	answers := map[string]int{}
	_ = raw.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		f, err := raw.Read()
		if err != nil {
			answers["closed"]++
			break
		}
		switch f.Type {
		case codec.TypeOK:
			t.Errorf("node 3, woken past its lease, answered OK to corr %d (SEND+ACK to a moved name, or a REGISTER)", f.Corr)
			answers["OK"]++
		case codec.TypeError:
			e, _ := codec.ParseError(f.Body)
			answers[e.Code.String()]++
		case codec.TypeMessage:
			if beforeUnknown > 0 && bytes.HasSuffix(f.Body, []byte("before")) {
				beforeUnknown-- // sent before the stop, its sender told TIMEOUT: not stale
				answers["MESSAGE before the stop"]++
				continue
			}
			t.Errorf("node 3, woken past its lease, delivered a MESSAGE forwarded to it during the stop: %q", f.Body)
			answers["MESSAGE"]++
		default:
			answers[f.Type.String()]++
		}
	}
	t.Logf("node 3's answers to the frames queued while it was stopped: %v", answers)
	fence := waitLineWithin(t, n3.p, `"msg":"node fenced`, 10*time.Second)
	t.Logf("node 3 fenced: %s", fence)
	if code := n3.p.wait(t); code != exitFailure {
		t.Errorf("fenced node 3 exit %d; want 1", code)
	}
	t.Logf("node 3 exited %v after SIGCONT", time.Since(woke).Round(time.Millisecond))
	reachAll(time.Now().Add(15 * time.Second))

	// Restarted on its store, node 3 rejoins with a new epoch.
	old := n3.epoch
	n3 = start(3, n1.route+","+n2.route, n3.storeDir)
	ready(n3)
	if n3.epoch == old {
		t.Errorf("restarted node 3 kept epoch %d", old)
	}
	late := &holder{name: "late", msgs: make(chan string, 1024)}
	lc, err := client.Dial(ctx, []string{n3.addr}, client.Config{Name: "late", OnMessage: func(m client.Message) {
		select {
		case late.msgs <- string(m.Payload):
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lc.Close() })
	late.c = lc
	// Right after the restart the KV may still be electing leaders (the woken node's
	// elections unseated them): UNAVAILABLE, which a client retries after retry-after.
	var regErr error
	pollUntil(t, "a REGISTER on the restarted node 3 to succeed", 20*time.Second, func() bool {
		regErr = lc.Register(ctx, late.name)
		if regErr != nil && !errors.Is(regErr, client.ErrUnavailable) {
			t.Fatalf("register on the restarted node 3: %v", regErr)
		}
		return regErr == nil
	}, func() string { return fmt.Sprint(regErr) })
	hs = append(hs, late)
	reachAll(time.Now().Add(15 * time.Second))
	t.Logf("recovered (every name reached, node 3 rejoined) %v after SIGCONT", time.Since(woke).Round(time.Millisecond))

	// Every node's view: three live nodes, GREEN, node 3 in its new epoch; the nodes'
	// own names add up to the names.
	nodes := []*sigstopNode{n1, n2, n3}
	var views map[int]clusterView
	pollUntil(t, "every node to see three GREEN nodes, node 3 in its new epoch, and own every name once", 15*time.Second, func() bool {
		views = map[int]clusterView{}
		local := 0
		for _, n := range nodes {
			v := getClusterView(t, n.admin)
			views[n.id] = v
			local += v.LocalNames
			if !v.Ready || len(v.Nodes) != 3 {
				return false
			}
			for _, nv := range v.Nodes {
				if nv.Zone != 0 || nv.Draining || (nv.ID == 3 && nv.Epoch != n3.epoch) {
					return false
				}
			}
		}
		return local == len(hs)
	})
	epochOf := map[uint16]uint64{}
	for _, nv := range views[1].Nodes {
		epochOf[nv.ID] = nv.Epoch
	}
	// The KV: one entry per name, owned by the connection its client holds now, in its
	// node's live epoch; no entry for the REGISTERs node 3 read after waking.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "switchboard_names_"+cname)
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	pollUntil(t, "the KV to show every name owned by its client's connection", 10*time.Second, func() bool {
		problems = problems[:0]
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			problems = append(problems, err.Error())
			return false
		}
		owners := map[string]kvOwner{}
		for key := range keys.Keys() {
			b, err := base64.RawURLEncoding.DecodeString(key)
			if err != nil {
				problems = append(problems, "bad key "+key)
				continue
			}
			e, err := kv.Get(ctx, key)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", b, err))
				continue
			}
			o, ok := parseKVOwner(e.Value())
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: bad value %x", b, e.Value()))
				continue
			}
			owners[string(b)] = o
		}
		for _, h := range hs {
			o, ok := owners[h.name]
			delete(owners, h.name)
			switch {
			case !ok:
				problems = append(problems, h.name+": no entry")
			case o.conn != h.c.ConnID() || o.epoch != epochOf[o.node]:
				problems = append(problems, fmt.Sprintf("%s: owner node %d epoch %d conn %x; its client holds conn %x (node epochs %v)",
					h.name, o.node, o.epoch, o.conn, h.c.ConnID(), epochOf))
			}
		}
		for name, o := range owners {
			problems = append(problems, fmt.Sprintf("unexpected entry %q: node %d epoch %d", name, o.node, o.epoch))
		}
		return len(problems) == 0
	}, func() string { return strings.Join(problems, "; ") })
	lostMu.Lock()
	if len(lost) > 0 {
		t.Errorf("clients reported names lost: %v", lost)
	}
	lostMu.Unlock()

	for _, h := range hs {
		_ = h.c.Close()
	}
	_ = sender.Close()
	// The names' deletes are done before the nodes stop: stopped all at once, a node's
	// last deletes may find no quorum (exit 1, "leaving the cluster incomplete").
	pollUntil(t, "the KV to be empty once the clients are gone", 10*time.Second, func() bool {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 0
	})
	nc.Close()
	for _, n := range nodes {
		n.p.signal(t, syscall.SIGTERM)
	}
	for _, n := range nodes {
		if code := n.p.wait(t); code != 0 {
			t.Errorf("node %d exit %d; want 0", n.id, code)
		}
	}
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}

// routeListen is the route address an embedded node's nats-server logs when it listens.
func routeListen(t *testing.T, p *proc) string {
	t.Helper()
	line := waitLineWithin(t, p, "Listening for route connections on", 20*time.Second)
	m := regexp.MustCompile(`Listening for route connections on ([0-9.]+:[0-9]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	return m[1]
}

// waitLineWithin is waitLine with its own bound, which first looks at the lines already
// read (waitLine only reads on).
func waitLineWithin(t *testing.T, p *proc, substr string, within time.Duration) string {
	t.Helper()
	for _, l := range p.seen {
		if strings.Contains(l, substr) {
			return l
		}
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("switchboard exited before logging %q; stderr:\n%s", substr, p.stderr())
			}
			p.seen = append(p.seen, line)
			if strings.Contains(line, substr) {
				return line
			}
		case <-deadline.C:
			t.Fatalf("no %q logged within %v; stderr:\n%s", substr, within, p.stderr())
		}
	}
}

// jsonField is a field of a JSON log line, as text (numbers exactly as logged).
func jsonField(t *testing.T, line, key string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var rec map[string]any
	if err := dec.Decode(&rec); err != nil {
		t.Fatalf("log line %q is not JSON: %v", line, err)
	}
	v := fmt.Sprint(rec[key])
	if rec[key] == nil || v == "" {
		t.Fatalf("log line %q lacks %s", line, key)
	}
	return v
}

// moveLeader makes sure no replica on server leads stream: it asks the leader to step
// down while it is there, until another leads.
func moveLeader(t *testing.T, nc *nats.Conn, stream, server string) {
	t.Helper()
	pollUntil(t, stream+"'s leader to be off "+server, 20*time.Second, func() bool {
		m, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 2*time.Second)
		if err != nil {
			return false
		}
		var info struct {
			Cluster struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		}
		if json.Unmarshal(m.Data, &info) != nil || info.Cluster.Leader == "" {
			return false
		}
		if info.Cluster.Leader != server {
			t.Logf("%s led by %s", stream, info.Cluster.Leader)
			return true
		}
		_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 2*time.Second)
		return false
	})
}

// pollUntil polls cond every 50 ms until it holds, failing the test after within; why,
// if given, says what was last seen.
func pollUntil(t *testing.T, what string, within time.Duration, cond func() bool, why ...func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if len(why) > 0 {
				msg = ": " + why[0]()
			}
			t.Fatalf("timed out after %v waiting for %s%s", within, what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterView is the part of GET /cluster these tests read.
type clusterView struct {
	Ready      bool `json:"ready"`
	Fenced     bool `json:"fenced"`
	LocalNames int  `json:"local_names"`
	Nodes      []struct {
		ID       uint16 `json:"id"`
		Epoch    uint64 `json:"epoch"`
		Draining bool   `json:"draining"`
		Zone     uint8  `json:"zone"`
	} `json:"nodes"`
}

func getClusterView(t *testing.T, admin string) clusterView {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + admin + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("/cluster: %v", err)
	}
	return v
}

// clusterDiag is what a node's admin listener says about name and its cluster state, for a
// failure message: its /cluster view, its /cluster/names entry for name and its cluster
// metrics.
func clusterDiag(admin, name string) string {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	get := func(path string) string {
		resp, err := hc.Get("http://" + admin + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return err.Error()
		}
		return string(b)
	}
	var out strings.Builder
	view := get("/cluster")
	out.WriteString("/cluster " + view[:min(len(view), 2000)])
	names := get("/cluster/names")
	if i := strings.Index(names, `"name":"`+name+`"`); i >= 0 {
		out.WriteString("\n/cluster/names: " + names[max(0, i-1):min(len(names), i+200)])
	} else {
		out.WriteString("\n/cluster/names: no " + name + " among " + strconv.Itoa(strings.Count(names, `"name":`)) + " names")
	}
	for _, l := range strings.Split(get("/metrics"), "\n") {
		if strings.HasPrefix(l, "switchboard_cluster_") && !strings.HasPrefix(l, "switchboard_cluster_forward") ||
			strings.HasPrefix(l, "switchboard_idle_timeouts_total") || strings.HasPrefix(l, "switchboard_connections ") {
			out.WriteString("\n" + l)
		}
	}
	return out.String()
}

// kvOwner is a names-bucket entry (docs/CLUSTER.md: version 1 | node u16 | epoch u64 |
// conn id u64, big-endian).
type kvOwner struct {
	node  uint16
	epoch uint64
	conn  uint64
}

func parseKVOwner(b []byte) (kvOwner, bool) {
	if len(b) != 19 || b[0] != 1 {
		return kvOwner{}, false
	}
	return kvOwner{node: binary.BigEndian.Uint16(b[1:3]), epoch: binary.BigEndian.Uint64(b[3:11]),
		conn: binary.BigEndian.Uint64(b[11:19])}, !bytes.Equal(b[11:19], make([]byte, 8))
}

// tlog writes a client's log lines to the test log, prefixed.
type tlog struct {
	t      *testing.T
	prefix string
}

func (l tlog) Write(b []byte) (int, error) {
	l.t.Log(l.prefix + ": " + strings.TrimSpace(string(b)))
	return len(b), nil
}

// dumpLog logs what a node of a failed test logged (up to now, if it still runs), but
// for its debug lines.
func dumpLog(t *testing.T, n *sigstopNode) {
	for idle := time.NewTimer(300 * time.Millisecond); ; {
		select {
		case l, ok := <-n.p.lines:
			if ok {
				n.p.seen = append(n.p.seen, l)
				continue
			}
		case <-idle.C:
		}
		break
	}
	for _, l := range n.p.seen {
		if !strings.Contains(l, `"level":"DEBUG"`) {
			t.Logf("node %d: %s", n.id, l)
		}
	}
}
