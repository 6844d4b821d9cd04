package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/bench"
)

// startServeCluster starts three `serve --cluster embedded` processes named cname, with
// extra flags, and waits until each has its directory ready and listens: node 1 first
// (given a route where nobody listens, so that it is in cluster mode), then nodes 2 and 3
// given node 1's route address.
func startServeCluster(t *testing.T, cname string, extra ...string) []*sigstopNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	_ = ln.Close()
	start := func(id int, routes string) *sigstopNode {
		t.Helper()
		n := &sigstopNode{id: id, storeDir: t.TempDir(), clusterName: cname}
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
			"--node-id", fmt.Sprint(id), "--cluster", "embedded", "--cluster-name", cname,
			"--cluster-listen", "127.0.0.1:0", "--cluster-routes", routes, "--cluster-store-dir", n.storeDir,
			"--drain-period", "300ms"}, extra...)
		n.p = startBin(t, nil, args...)
		n.route = routeListen(t, n.p)
		t.Cleanup(func() { // before startBin's cleanup kills it
			if t.Failed() {
				dumpLog(t, n)
			}
		})
		return n
	}
	n1 := start(1, nowhere)
	nodes := []*sigstopNode{n1, start(2, n1.route), start(3, n1.route)}
	for _, n := range nodes {
		line := waitLineWithin(t, n.p, `"msg":"cluster directory ready"`, 60*time.Second)
		n.natsURL = jsonField(t, line, "nats_client_url")
		fmt.Sscan(jsonField(t, line, "epoch"), &n.epoch)
		n.addr = jsonField(t, waitLineWithin(t, n.p, `"msg":"switchboard listening"`, 10*time.Second), "addr")
		n.admin = jsonField(t, waitLineWithin(t, n.p, `"msg":"admin listening"`, 10*time.Second), "addr")
	}
	return nodes
}

// TestBenchFailover (issue 11) runs `switchboard bench failover` as a process against
// three serve processes and has it kill node 3 with SIGKILL under SEND+ACK and REQUEST
// load from 12 Go clients (4 of them on node 3). The report must show every one of node
// 3's clients reconnected and every one of their names reachable again, no message
// acknowledged and never delivered, none delivered twice, and the survivors' directory
// views consistent (no name with two owners; every cache entry what its owner holds;
// every client's name local where it is connected). Only counts are asserted, never
// durations: those depend on the machine. ~15 s (~20 s with -race).
func TestBenchFailover(t *testing.T) {
	began := time.Now()
	nodes := benchFailover(t, "failover", "--kill-pid", 12)
	// A killed process's links end first: each survivor saw node 3's link end and took
	// node 3 for dead.
	for i, n := range nodes[:2] {
		m := scrapeTest(t, n.admin)
		if lost := sumOf(m, "switchboard_cluster_links_lost_total"); lost < 1 {
			t.Errorf("node %d: links lost %v; want node 3's", i+1, lost)
		}
		if down := sumOf(m, "switchboard_cluster_nodes_down_total"); down != 1 {
			t.Errorf("node %d: nodes taken for dead %v; want 1 (node 3)", i+1, down)
		}
	}
	t.Logf("test took %v", time.Since(began).Round(time.Millisecond))
}

// TestBenchFailoverDrain is TestBenchFailover with a planned restart: node 3 gets SIGTERM
// and drains (GOAWAY; its clients close, move and register again), with 60 clients (20
// on node 3). A drain has no excuse for an acknowledged message it did not deliver, and
// no name may be lost. At this size neither defect the drain bench found shows reliably
// (names lost to a late KV delete: 322–844 of 1,000 clients, docs/BENCHMARKS.md, "A planned
// drain in a cluster"; acknowledged messages dropped at a GOODBYE): TestHandover and
// TestCloseWaitsForLanding pin those down; this checks the whole path end to end.
func TestBenchFailoverDrain(t *testing.T) {
	began := time.Now()
	benchFailover(t, "drain", "--drain-pid", 60)
	t.Logf("test took %v", time.Since(began).Round(time.Millisecond))
}

// benchFailover starts three serve processes (cluster cname), runs `bench failover` with
// clients Go clients against them and victimFlag (--kill-pid or --drain-pid) for node
// 3, and checks the report's promises (see TestBenchFailover). It returns the nodes.
func benchFailover(t *testing.T, cname, victimFlag string, clients int) []*sigstopNode {
	t.Helper()
	if testing.Short() {
		t.Skip("three serve processes and an 8 s bench run")
	}
	if runtime.GOOS != "linux" {
		t.Skip("signals to a serve process")
	}
	began := time.Now()
	// A drain period long enough for every client to leave on its own (it finishes its
	// calls first): at its end the drain closes whatever is left, which may lose what is
	// on its way.
	nodes := startServeCluster(t, cname, "--drain-period", "10s")
	t.Logf("cluster ready after %v", time.Since(began).Round(time.Millisecond))
	// The directory's buckets are led from nodes 1 or 2: killing a bucket's leader adds a
	// JetStream election (4–9 s here) before any name can be claimed again, which would
	// make "every name reachable again within the run" a matter of timing. That case is
	// the bench's to measure (docs/BENCHMARKS.md), not this test's to assert.
	nc, err := nats.Connect(nodes[0].natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{"switchboard_names_" + cname, "switchboard_leases_" + cname} {
		moveLeader(t, nc, "KV_"+bucket, "node-3")
	}
	nc.Close()
	// Every node linked to the two others (docs/CLUSTER.md, Links) before the signal.
	for i, n := range nodes {
		pollUntil(t, fmt.Sprintf("node %d to hold its 2 links", i+1), 20*time.Second, func() bool {
			return sumOf(scrapeTest(t, n.admin), "switchboard_cluster_links") == 2
		})
	}
	var addrs, admins []string
	for _, n := range nodes {
		addrs, admins = append(addrs, n.addr), append(admins, n.admin)
	}
	out := filepath.Join(t.TempDir(), "failover.json")
	stdout, stderr, code := runBin(t, nil, "bench", "failover",
		"--addr", strings.Join(addrs, ","), "--admin", strings.Join(admins, ","),
		victimFlag, fmt.Sprint(nodes[2].p.cmd.Process.Pid), "--victim-index", "2",
		"--clients", fmt.Sprint(clients), "--rate", "300", "--mode", "mix", "--kill-at", "1500ms", "--duration", "8s",
		"--grace", "3s", "--scan-timeout", "8s", "--timeout", "27s", "--json", out)
	t.Logf("bench failover (exit %d):\n%s%s", code, stdout, stderr)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no JSON report: %v", err)
	}
	var res bench.FailoverResult
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if code != 0 || len(res.Violations) != 0 || res.Error != "" {
		t.Errorf("exit %d, violations %q, error %q; want 0, none, none", code, res.Violations, res.Error)
	}
	if want := clients / 3; res.VictimClients != want {
		t.Errorf("victim's clients = %d; want %d (%d clients round-robin over 3 nodes)", res.VictimClients, want, clients)
	}
	if res.Reconnect.N != res.VictimClients || res.Reconnect.Missed != 0 {
		t.Errorf("reconnect = %+v; want all %d of the victim's clients reconnected", res.Reconnect, res.VictimClients)
	}
	if res.Reach.N != res.VictimClients || res.Reach.Missed != 0 || res.NamesLost != 0 {
		t.Errorf("reach = %+v, names lost %d; want all %d of the victim's names reachable again, none lost", res.Reach, res.NamesLost, res.VictimClients)
	}
	s, q := res.Send, res.Request
	if s.Sent == 0 || q.Sent == 0 {
		t.Errorf("sent %d SEND+ACK and %d REQUEST; want both (mode mix)", s.Sent, q.Sent)
	}
	if s.AckedNotDelivered != 0 || s.Duplicates != 0 || q.Duplicates != 0 || q.TwoOutcomes != 0 || q.WrongAnswer != 0 {
		t.Errorf("send %+v, request %+v; want nothing acknowledged and lost, duplicated or answered twice", s, q)
	}
	if sent := s.OK + sumMap(s.Refused) + sumMap(s.NoOutcome); sent != s.Sent {
		t.Errorf("SEND+ACK: ok + refused + no outcome = %d; want sent %d", sent, s.Sent)
	}
	if sent := q.Answered + sumMap(q.Refused) + sumMap(q.NoOutcome) + q.WrongAnswer; sent != q.Sent {
		t.Errorf("REQUEST: answered + refused + no outcome = %d; want sent %d", sent, q.Sent)
	}
	sc := res.Scan
	if !sc.Consistent || sc.TwoOwners != 0 || len(sc.Nodes) != 2 || sc.Names < clients {
		t.Errorf("scan = %+v; want nodes 1 and 2 consistent, at least the %d names, no two owners", sc, clients)
	}
	return nodes
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
