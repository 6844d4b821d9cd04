package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodeWithoutJetStream runs a fourth node with JetStream off beside three with it
// (the shape of a cluster larger than its replica count): it becomes ready, its claims
// are decided by the others' KV, each side's caches see the other's names, and it keeps
// no store directory.
func TestNodeWithoutJetStream(t *testing.T) {
	tc := startCluster(t)
	c := testConfig(4)
	c.Listen = "127.0.0.1:0"
	c.Routes = strings.Join(tc.addrs, ",")
	c.StoreDir = filepath.Join(t.TempDir(), "store4")
	c.JetStream = false
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n4, err := Start(ctx, c, testLogger(t).With("node", 4))
	if err != nil {
		t.Fatalf("node 4 (no JetStream): %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n4.Close(ctx)
	}()
	if n4.ns.JetStreamEnabled() {
		t.Errorf("node 4 runs JetStream; want it off")
	}
	if _, err := os.Stat(c.StoreDir); !os.IsNotExist(err) {
		t.Errorf("node 4's store dir: Stat = %v; want it absent", err)
	}
	if ok, why := n4.Ready(); !ok {
		t.Fatalf("node 4 not ready after Start: %s", why)
	}
	a, d := tc.node(0).Directory(), n4.Directory()
	if err := claim(t, d, "plain", conn(4, 1)); err != nil {
		t.Fatalf("claim on node 4: %v", err)
	}
	if err := claim(t, a, "js", conn(1, 1)); err != nil {
		t.Fatalf("claim on node 1: %v", err)
	}
	waitFor(t, "each node's name in the other's cache", 5*time.Second, func() bool {
		return lookup(a, "plain") == conn(4, 1) && lookup(d, "js") == conn(1, 1)
	})
	if err := claim(t, d, "js", conn(4, 2)); err == nil {
		t.Errorf("claim on node 4 of node 1's name succeeded; want it refused")
	}
	if err := d.Unregister("plain", conn(4, 1)); err != nil {
		t.Fatalf("Unregister on node 4: %v", err)
	}
	waitFor(t, "node 4's unregister in node 1's cache", 5*time.Second, func() bool {
		return lookup(a, "plain") == 0
	})
}
