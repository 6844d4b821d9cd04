package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/internal/wait"
)

// TestServeCluster runs serve as a one-node embedded cluster (one replica): it joins
// before it listens, /readyz covers the directory, a REGISTER is decided by the KV
// (NAME_TAKEN for a second connection), local routing is unchanged, and SIGTERM leaves
// the cluster after the server stopped.
func TestServeCluster(t *testing.T) {
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
		"--cluster", "embedded", "--cluster-replicas", "1",
		"--cluster-store-dir", t.TempDir(), "--cluster-name", "cmdtest", "--node-id", "7")
	addrOf := func(line string) string {
		t.Helper()
		var rec struct {
			Addr string `json:"addr"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		return rec.Addr
	}
	ready := p.waitLine(t, `"msg":"cluster directory ready"`)
	if !strings.Contains(ready, `"node_id":7`) || !strings.Contains(ready, `"mode":"embedded"`) {
		t.Errorf("ready line %q lacks the node id or mode", ready)
	}
	client := addrOf(p.waitLine(t, `"msg":"switchboard listening"`))
	admin := addrOf(p.waitLine(t, `"msg":"admin listening"`))

	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d %q; want 200", resp.StatusCode, body)
	}
	// /cluster: this node's view, itself with its client address once the lease carries it.
	var rep struct {
		NodeID uint16 `json:"node_id"`
		Ready  bool   `json:"ready"`
		Nodes  []struct {
			ID   uint16 `json:"id"`
			Self bool   `json:"self"`
			Addr string `json:"addr"`
		} `json:"nodes"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get("http://" + admin + "/cluster")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("/cluster: %v", err)
		}
		if len(rep.Nodes) == 1 && rep.Nodes[0].Addr == client {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/cluster = %+v; want node 7 alone, with its client address %s", rep, client)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rep.NodeID != 7 || !rep.Ready || rep.Nodes[0].ID != 7 || !rep.Nodes[0].Self {
		t.Errorf("/cluster = %+v; want node 7, ready, itself listed", rep)
	}
	// /cluster/names: the directory as this node sees it, here empty.
	resp, err = hc.Get("http://" + admin + "/cluster/names")
	if err != nil {
		t.Fatal(err)
	}
	var names cluster.NamesView
	err = json.NewDecoder(resp.Body).Decode(&names)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || names.NodeID != 7 || len(names.Local) != 0 {
		t.Errorf("/cluster/names = %d %+v (%v); want 200, node 7, no local names", resp.StatusCode, names, err)
	}
	resp, err = hc.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"switchboard_cluster_ready 1", "switchboard_cluster_nodes 1", "switchboard_cluster_fenced 0"} {
		if !strings.Contains(string(metrics), m+"\n") {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	hc.CloseIdleConnections()

	a := rawpeer.Dial(t, client)
	a.Hello("a", "")
	a.Write(codec.AppendName(nil, codec.TypeRegister, 1, "svc"))
	if f := a.Expect(codec.TypeOK); f.Corr != 1 {
		t.Fatalf("REGISTER OK corr %d; want 1", f.Corr)
	}
	b := rawpeer.Dial(t, client)
	b.Hello("b", "")
	b.Write(codec.AppendName(nil, codec.TypeRegister, 2, "svc"))
	if f, _ := b.ExpectError(codec.CodeNameTaken); f.Corr != 2 {
		t.Fatalf("NAME_TAKEN corr %d; want 2", f.Corr)
	}
	b.Write(codec.AppendSend(nil, codec.FlagAck, 3, "svc", []byte("hi")))
	b.Expect(codec.TypeOK)
	if f := a.Expect(codec.TypeMessage); !strings.HasSuffix(string(f.Body), "hi") {
		t.Fatalf("MESSAGE body %q", f.Body)
	}
	// The node's own REGISTER came back through its names watch, live: its delay counted;
	// and it was decided by a claim worker (a name new to the cluster), counted twice.
	wait.For(t, "the REGISTER in the names watch's delay histogram", func() bool {
		return scrapeTest(t, admin)[`switchboard_cluster_watch_delay_seconds_count{watch="names"}`] >= 1
	})
	m := scrapeTest(t, admin)
	for _, stage := range []string{"queued", "decided"} {
		if n := m[`switchboard_cluster_claim_seconds_count{stage="`+stage+`"}`]; n < 1 {
			t.Errorf("switchboard_cluster_claim_seconds_count{stage=%q} = %v; want the REGISTER's claim", stage, n)
		}
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "left the cluster") {
		t.Errorf("stderr lacks the cluster's leaving:\n%s", p.stderr())
	}
}

func TestCheckConfigCluster(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want []string
	}{
		{"cluster: external\ncluster-lease-renew: 10s\n", []string{"nats-url: required", "cluster-lease-renew"}},
		// Checked whether or not cluster-client-advertise is set (they were only with it).
		{"cluster: embedded\ncluster-replicas: 3\n", []string{"cluster-replicas: 3 needs cluster-routes"}},
		{"cluster: embedded\ncluster-routes: 127.0.0.1\n", []string{`cluster-routes: "127.0.0.1": want host:port`}},
		{"cluster: embedded\ncluster-routes: 127.0.0.1:1\ncluster-client-advertise: nope\n", []string{"cluster-client-advertise: want host:port"}},
	} {
		file := writeConfig(t, c.yaml)
		_, stderr, code := runCLI(t, nil, "check-config", file)
		if code != exitUsage {
			t.Errorf("%q: exit %d; want 2; stderr %q", c.yaml, code, stderr)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(stderr, want) {
				t.Errorf("%q: stderr lacks %q:\n%s", c.yaml, want, stderr)
			}
		}
	}
}

// TestConfigClusterClaimSettings: cluster-claim-workers and cluster-claim-batch are set
// like the other cluster keys (file, environment, flag; defaults cluster.DefaultClaim*),
// are checked when the cluster is on (workers at least 1, batch 1 to
// cluster.MaxClaimBatch), and become the cluster's ClaimWorkers and ClaimBatch.
func TestConfigClusterClaimSettings(t *testing.T) {
	for _, k := range []struct {
		key      string
		def      int      // the default
		bad      []string // values check-config refuses
		problem  string   // how it names them, before the value
		node     func(*config.Node) *int
		clusterd func(cluster.Config) int
	}{
		{"cluster-claim-workers", cluster.DefaultClaimWorkers, []string{"0"}, "want at least 1, got ",
			func(n *config.Node) *int { return &n.ClusterClaimWorkers }, func(c cluster.Config) int { return c.ClaimWorkers }},
		{"cluster-claim-batch", cluster.DefaultClaimBatch, []string{"0", "1001"}, "want 1 to 1000, got ",
			func(n *config.Node) *int { return &n.ClusterClaimBatch }, func(c cluster.Config) int { return c.ClaimBatch }},
	} {
		env := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(k.key, "-", "_"))
		file := writeConfig(t, k.key+": 5\n")
		for _, tt := range []struct {
			name      string
			env, args []string
			want      string // regexp, multi-line mode
		}{
			{"default", nil, nil, fmt.Sprintf(`^%s: %d +# default$`, k.key, k.def)},
			{"file", nil, []string{"--config", file}, `^` + k.key + `: 5 +# file$`},
			{"env", []string{"SWITCHBOARD_CONFIG=" + file, env + "=6"}, nil, `^` + k.key + `: 6 +# env$`},
			{"flag", []string{env + "=6"}, []string{"--" + k.key, "7"}, `^` + k.key + `: 7 +# flag$`},
		} {
			stdout, stderr, code := runCLI(t, tt.env, append([]string{"serve", "--print-config"}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("%s %s: exit %d; want 0; stderr: %s", k.key, tt.name, code, stderr)
			}
			if !regexp.MustCompile("(?m)" + tt.want).MatchString(stdout) {
				t.Errorf("%s %s: --print-config lacks %q:\n%s", k.key, tt.name, tt.want, stdout)
			}
		}
		for _, v := range k.bad {
			_, stderr, code := runCLI(t, nil, "check-config", writeConfig(t, "cluster: external\nnats-url: nats://127.0.0.1:4222\n"+k.key+": "+v+"\n"))
			if want := k.key + ": " + k.problem + v; code != exitUsage || !strings.Contains(stderr, want) {
				t.Errorf("%s %s: exit %d, stderr %q; want 2 and %q", k.key, v, code, stderr, want)
			}
		}
		n := config.DefaultNode()
		if got := *k.node(&n); got != k.def {
			t.Errorf("default %s %d; want %d", k.key, got, k.def)
		}
		*k.node(&n) = 9
		if got := k.clusterd(clusterConfig(n)); got != 9 {
			t.Errorf("cluster setting from %s = %d; want 9", k.key, got)
		}
	}
}

// TestServeClusterUnreachable: external mode with no NATS at nats-url fails at start
// (exit 1) and says why.
func TestServeClusterUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nobody listens there now
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off",
		"--cluster", "external", "--nats-url", "nats://"+addr, "--cluster-replicas", "1")
	if code := p.wait(t); code != exitFailure {
		t.Errorf("exit %d; want 1; stderr:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "joining the cluster failed") {
		t.Errorf("stderr lacks the failure:\n%s", p.stderr())
	}
}

// TestServeClusterSignalWhileJoining: a node waiting for a cluster that cannot form (its
// only peer is not there, three replicas) answers on its admin listener meanwhile
// (/healthz 200, so that a liveness check does not restart it; /readyz and the rest 503,
// saying it is joining), and stops on SIGTERM, cleanly and at once.
func TestServeClusterSignalWhileJoining(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := ln.Addr().String()
	_ = ln.Close()
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
		"--cluster", "embedded", "--cluster-listen", "127.0.0.1:0", "--cluster-routes", peer,
		"--cluster-store-dir", t.TempDir())
	var rec struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(p.waitLine(t, `"msg":"admin listening while the node joins its cluster"`)), &rec); err != nil {
		t.Fatal(err)
	}
	p.waitLine(t, "joining the cluster")
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", http.StatusOK, "ok"},
		{"/readyz", http.StatusServiceUnavailable, "joining its cluster"},
		{"/metrics", http.StatusServiceUnavailable, "joining its cluster"},
	} {
		resp, err := hc.Get("http://" + rec.Addr + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.body) {
			t.Errorf("%s while joining = %d %q; want %d %q", c.path, resp.StatusCode, body, c.code, c.body)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "interrupted by a signal while joining the cluster") {
		t.Errorf("stderr lacks the interruption:\n%s", p.stderr())
	}
}

func TestClientAdvertise(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, c := range []struct {
		configured string
		ln         net.Addr
		want       string
	}{
		{"sb1.example:7400", tcp("0.0.0.0:7400"), "sb1.example:7400"}, // configured wins
		{"", tcp("10.1.2.3:7400"), "10.1.2.3:7400"},                   // a specific listen address
		{"", tcp("127.0.0.1:41000"), "127.0.0.1:41000"},
		{"", tcp("0.0.0.0:7400"), ""}, // wildcards: nothing to tell clients
		{"", tcp("[::]:7400"), ""},
		{"", nil, ""},
	} {
		if got := clientAdvertise(c.configured, c.ln); got != c.want {
			t.Errorf("clientAdvertise(%q, %v) = %q; want %q", c.configured, c.ln, got, c.want)
		}
	}
}

// TestClusterEndpointOff: on a single node /cluster says the cluster is off, /cluster/names
// is 404, and every
// other path still reaches the server's admin handler.
func TestClusterEndpointOff(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "inner") })
	h := withCluster(inner, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/cluster", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "{\n  \"mode\": \"off\"\n}" {
		t.Errorf("/cluster = %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/cluster/names", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "cluster mode is off") {
		t.Errorf("/cluster/names = %d %q; want 404 saying the cluster is off", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Body.String() != "inner" {
		t.Errorf("/readyz reached %q; want the inner handler", rec.Body.String())
	}
}

func TestClusterLoops(t *testing.T) {
	for procs, want := range map[int]int{1: 1, 2: 1, 3: 2, 8: 7} {
		if got := config.ClusterLoops(procs); got != want {
			t.Errorf("clusterLoops(%d) = %d; want %d", procs, got, want)
		}
	}
}

func TestClusterGOGC(t *testing.T) {
	for profile, want := range map[int]int{100: 50, 200: 100, 25: 12, 10: 10} {
		if got := config.ClusterGOGC(profile); got != want {
			t.Errorf("clusterGOGC(%d) = %d; want %d", profile, got, want)
		}
	}
	n := config.DefaultNode()
	if n.JetStreamNode() {
		t.Error("cluster off: jetStreamNode = true")
	}
	n.Cluster = "embedded"
	if !n.JetStreamNode() {
		t.Error("embedded with JetStream: jetStreamNode = false")
	}
	n.ClusterJetstream = false
	if n.JetStreamNode() {
		t.Error("embedded without JetStream: jetStreamNode = true")
	}
	n.Cluster, n.ClusterJetstream = "external", true
	if n.JetStreamNode() {
		t.Error("external: jetStreamNode = true")
	}
}
