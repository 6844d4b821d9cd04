package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard/switchboard/shard"
)

// namesNode is a Node with a directory that has no NATS connection, its cache holding
// n names: every fifth this node's own (node 1, epoch 100), the rest of nodes 2..5.
func namesNode(tb testing.TB, n int) *Node {
	tb.Helper()
	cfg := testConfig(1)
	d := newDirectory(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	tb.Cleanup(d.cancel)
	d.epoch = 100
	d.cache.epoch.Store(100)
	for node := uint16(2); node <= 5; node++ {
		d.liveNodes[node] = lease{epoch: 100 + uint64(node)}
	}
	for i := range n {
		node := uint16(1 + i%5)
		epoch := uint64(100)
		if node != 1 {
			epoch += uint64(node)
		}
		d.cache.set(fmt.Sprintf("name-%d", i), cached{owner: owner{id: shard.MakeConnID(node, 0, uint32(i), 1), epoch: epoch}, rev: uint64(i + 1)})
	}
	return &Node{cfg: cfg, dir: d}
}

// TestWriteNamesShape: every name once, in the right list, and valid JSON also for
// names that need escaping.
func TestWriteNamesShape(t *testing.T) {
	n := namesNode(t, 50)
	n.dir.cache.set("quote\"and\\slash\n", cached{owner: owner{id: shard.MakeConnID(1, 0, 999, 1), epoch: 100}, rev: 1000})
	n.dir.cache.set("gone", cached{owner: owner{id: shard.MakeConnID(2, 0, 998, 1), epoch: 102}, rev: 1001, dead: true})
	var buf bytes.Buffer
	if err := n.WriteNames(&buf); err != nil {
		t.Fatal(err)
	}
	var v NamesView
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, buf.String())
	}
	if v.NodeID != 1 || v.Epoch != 100 || len(v.Local) != 11 || len(v.Remote) != 40 {
		t.Fatalf("node %d epoch %d, %d local, %d remote; want 1, 100, 11, 40", v.NodeID, v.Epoch, len(v.Local), len(v.Remote))
	}
	seen := map[string]bool{}
	for _, l := range v.Local {
		seen[l.Name] = true
		if shard.ConnID(l.Conn).Node() != 1 {
			t.Errorf("local %q has conn %d of node %d", l.Name, l.Conn, shard.ConnID(l.Conn).Node())
		}
	}
	for _, r := range v.Remote {
		if seen[r.Name] {
			t.Errorf("%q listed twice", r.Name)
		}
		seen[r.Name] = true
		if r.Node == 1 || r.Epoch != 100+uint64(r.Node) || !r.Live || shard.ConnID(r.Conn).Node() != r.Node {
			t.Errorf("remote entry %+v; want another node's, its epoch, live", r)
		}
	}
	if !seen["quote\"and\\slash\n"] || seen["gone"] {
		t.Errorf("escaped name listed %v, tombstone listed %v; want true, false", seen["quote\"and\\slash\n"], seen["gone"])
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteNamesError(t *testing.T) {
	if err := namesNode(t, 10_000).WriteNames(errWriter{}); err != io.ErrClosedPipe {
		t.Errorf("WriteNames to a failing writer = %v; want %v", err, io.ErrClosedPipe)
	}
}

// BenchmarkWriteNames is GET /cluster/names with 100,000 names. max-gap-µs is the longest
// pause between two names reaching the callback while the cache is walked: about the
// time one partition's read lock is held to copy it (writers of that partition wait
// that long; lookups do not).
func BenchmarkWriteNames(b *testing.B) {
	n := namesNode(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := n.WriteNames(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	var maxGap time.Duration
	last := time.Now()
	n.dir.cache.each(func(string, cached) {
		now := time.Now()
		maxGap = max(maxGap, now.Sub(last))
		last = now
	})
	b.ReportMetric(float64(maxGap.Microseconds()), "max-gap-µs")
}
