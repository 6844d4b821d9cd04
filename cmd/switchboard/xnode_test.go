package main

import (
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// startPair starts two serve processes as one cluster named name, with extra flags:
// node 7 embedded as a cluster of one, node 8 external through node 7's NATS. It returns
// them and their client addresses.
func startPair(t *testing.T, name string, extra ...string) (p7, p8 *proc, addr7, addr8 string) {
	t.Helper()
	field := func(line, key string) string {
		t.Helper()
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		v, _ := rec[key].(string)
		if v == "" {
			t.Fatalf("log line %q lacks %s", line, key)
		}
		return v
	}
	common := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json",
		"--cluster-replicas", "1", "--cluster-name", name}, extra...)
	common = slices.Clip(common) // each node appends its own flags
	p7 = startBin(t, nil, append(common, "--node-id", "7", "--cluster", "embedded", "--cluster-store-dir", t.TempDir())...)
	url := field(p7.waitLine(t, `"msg":"cluster directory ready"`), "nats_client_url")
	addr7 = field(p7.waitLine(t, `"msg":"switchboard listening"`), "addr")
	p8 = startBin(t, nil, append(common, "--node-id", "8", "--cluster", "external", "--nats-url", url)...)
	addr8 = field(p8.waitLine(t, `"msg":"switchboard listening"`), "addr")
	return p7, p8, addr7, addr8
}

// TestServeCrossNode runs two serve processes as one cluster (node 7 embedded as a
// cluster of one, node 8 external through node 7's NATS) and sends across them: serve
// wires the forwarder as the server's Remote and the server as the forwarder's handler.
func TestServeCrossNode(t *testing.T) {
	p7, p8, addr7, addr8 := startPair(t, "xnode")

	svc := rawpeer.Dial(t, addr8)
	svc.Hello("svc", "")
	svc.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	svc.Expect(codec.TypeOK)

	c := rawpeer.Dial(t, addr7)
	c.Hello("c", "")
	if f := knownOn(t, c, svc, "svc"); !strings.HasSuffix(string(f.Body), "probe") {
		t.Fatalf("MESSAGE body %q", f.Body)
	}
	c.Write(codec.AppendRequest(nil, 2, "svc", 5000, []byte("ping")))
	in := svc.Expect(codec.TypeIncoming)
	tok, _, _, _, _ := codec.ParseIncoming(in.Body)
	svc.Write(codec.AppendReply(nil, 0, tok, []byte("pong")))
	if f := c.Expect(codec.TypeResponse); f.Corr != 2 || string(f.Body) != "pong" {
		t.Fatalf("RESPONSE corr %d %q; want corr 2 pong", f.Corr, f.Body)
	}

	// The route stays up: node 7, an embedded server with no routes whose only peer is its
	// own NATS client (node 8, external), must not take itself for cut off. Its isolation
	// check runs every 100 ms; 20 more SEND+ACKs over ~0.5 s see several.
	for corr := uint32(1000); corr < 1020; corr++ {
		c.Write(codec.AppendSend(nil, codec.FlagAck, corr, "svc", []byte("again")))
		if f := c.Expect(codec.TypeOK); f.Corr != corr {
			t.Fatalf("OK corr %d; want %d", f.Corr, corr)
		}
		svc.Expect(codec.TypeMessage)
		time.Sleep(25 * time.Millisecond)
	}

	// Each node learns the other's client address from its lease; draining node 8 sends
	// its clients to node 7.
	p8.waitLine(t, `"addrs":["`+addr7+`"]`)
	p8.signal(t, syscall.SIGTERM)
	g, err := codec.ParseGoAway(svc.Expect(codec.TypeGoAway).Body)
	if err != nil || len(g.Addrs) != 1 || g.Addrs[0] != addr7 {
		t.Fatalf("GOAWAY from the draining node: %+v, %v; want node 7's address %s", g, err, addr7)
	}
	if code := p8.wait(t); code != 0 {
		t.Errorf("node 8 exit %d; want 0; stderr:\n%s", code, p8.stderr())
	}
	for _, p := range []*proc{p7} {
		p.signal(t, syscall.SIGINT)
		if code := p.wait(t); code != 0 {
			t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
		}
	}
}
