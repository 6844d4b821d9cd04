package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/server"
)

// startServer starts an in-process switchboard on 127.0.0.1:0 and returns its address.
func startServer(t *testing.T, cfg server.Config) string {
	t.Helper()
	if cfg.Loops == 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	return testserver.Start(t, cfg).Addr().String()
}

// runBench runs `switchboard bench ARGS --json -` in process and returns the decoded
// result as a generic map, with stderr for failure messages.
func runBench(t *testing.T, r runner, args ...string) (map[string]any, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args, "--json", "-")
	code := mainWith(args, &stdout, &stderr, r)
	if code != 0 {
		t.Fatalf("bench %v exited %d; stderr:\n%s", args, code, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object (%v):\n%s", err, stdout.String())
	}
	return m, stderr.String()
}

func inProcess() runner { return runner{inProcess: true} }

// get walks a path of keys in a decoded JSON object.
func get(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not an object", path, k)
		}
		if cur, ok = obj[k]; !ok {
			t.Fatalf("JSON lacks %s", path)
		}
	}
	return cur
}

func num(t *testing.T, m map[string]any, path string) float64 {
	t.Helper()
	v, ok := get(t, m, path).(float64)
	if !ok {
		t.Fatalf("%s is not a number: %v", path, get(t, m, path))
	}
	return v
}

// resultKeys is the JSON shape issue 3 promises.
var resultKeys = []string{
	"scenario", "started_at", "duration_s", "config",
	"connections.target", "connections.established", "connections.refused", "connections.refused_by_code", "connections.failed", "connections.failed_by_cause",
	"messages.sent", "messages.received", "messages.errors_by_code", "messages.unanswered", "messages.lost",
	"throughput_msgs_per_s",
	"latency_us.p50", "latency_us.p90", "latency_us.p95", "latency_us.p99", "latency_us.p999", "latency_us.max",
	"server.rss_bytes_before", "server.rss_bytes_after", "server.rss_bytes_peak", "server.rss_per_conn_bytes", "server.cpu_seconds", "server.cpu_per_msg_us", "server.source",
	"load_generator.cpu_seconds", "load_generator.cpu_per_msg_us",
	"floor.throughput_msgs_per_s", "floor.ratio",
}

func TestEchoClosedLoopJSONShape(t *testing.T) {
	addr := startServer(t, server.Config{})
	pid := strconv.Itoa(os.Getpid())
	m, _ := runBench(t, inProcess(), "echo", "--addr", addr, "--conns", "4", "--pipeline", "8",
		"--duration", "1s", "--server-pid", pid)
	for _, k := range resultKeys {
		get(t, m, k)
	}
	cfg := get(t, m, "config").(map[string]any)
	for _, f := range []string{"addr", "admin", "conns", "duration", "size", "pipeline", "rate", "ramp", "procs",
		"json", "plot", "floor", "server-pid", "token", "interval"} {
		if _, ok := cfg[f]; !ok {
			t.Errorf("config lacks flag %q", f)
		}
	}
	// The server runs in this process: both CPU figures measure it and the load together.
	if num(t, m, "load_generator.cpu_seconds") <= 0 || num(t, m, "load_generator.cpu_per_msg_us") <= 0 ||
		num(t, m, "server.cpu_per_msg_us") <= 0 {
		t.Errorf("CPU figures missing: server %v, load generator %v", get(t, m, "server"), get(t, m, "load_generator"))
	}
	if get(t, m, "scenario") != "echo" || num(t, m, "connections.established") != 4 {
		t.Fatalf("scenario %v, established %v", get(t, m, "scenario"), get(t, m, "connections.established"))
	}
	sent, recv := num(t, m, "messages.sent"), num(t, m, "messages.received")
	if recv == 0 || sent != recv || num(t, m, "messages.lost") != 0 {
		t.Fatalf("sent %v received %v lost %v; want all answered", sent, recv, num(t, m, "messages.lost"))
	}
	if p50, p99 := num(t, m, "latency_us.p50"), num(t, m, "latency_us.p99"); p50 <= 0 || p99 < p50 {
		t.Fatalf("latency p50 %v p99 %v", p50, p99)
	}
	if num(t, m, "throughput_msgs_per_s") <= 0 || num(t, m, "server.rss_bytes_before") <= 0 {
		t.Fatalf("throughput %v, rss before %v", num(t, m, "throughput_msgs_per_s"), num(t, m, "server.rss_bytes_before"))
	}
	if src := get(t, m, "server.source").(string); !strings.HasPrefix(src, "proc:") {
		t.Fatalf("server.source = %q; want proc:PID", src)
	}
}

func TestEchoOpenLoop(t *testing.T) {
	addr := startServer(t, server.Config{})
	m, _ := runBench(t, inProcess(), "echo", "--addr", addr, "--conns", "4", "--rate", "2000", "--duration", "1s")
	sent := num(t, m, "messages.sent")
	// 2000/s for 1 s: the pacer must not be far off in either direction.
	if sent < 1800 || sent > 2100 {
		t.Fatalf("sent %v messages at --rate 2000 for 1s; want about 2000", sent)
	}
	if num(t, m, "messages.received") != sent {
		t.Fatalf("received %v of %v", num(t, m, "messages.received"), sent)
	}
}

// TestRateOverEstablished: --rate is the total offered by the connections established;
// refused ones do not take their share with them.
func TestRateOverEstablished(t *testing.T) {
	addr := startServer(t, server.Config{MaxConnections: 2})
	m, _ := runBench(t, inProcess(), "echo", "--addr", addr, "--conns", "4", "--rate", "2000", "--duration", "1s")
	if est, ref := num(t, m, "connections.established"), num(t, m, "connections.refused"); est != 2 || ref != 2 {
		t.Fatalf("established %v refused %v; want 2 and 2 (max-connections 2)", est, ref)
	}
	if sent := num(t, m, "messages.sent"); sent < 1800 || sent > 2100 {
		t.Fatalf("sent %v messages at --rate 2000 for 1s over 2 of 4 connections; want about 2000", sent)
	}
}

func TestPartRates(t *testing.T) {
	specs := []partSpec{{N: 3}, {N: 3}, {N: 4}}
	for _, tt := range []struct {
		name     string
		scenario string
		rate     float64
		est      []int
		want     []float64
	}{
		{"closed loop", ScenarioEcho, 0, []int{3, 3, 4}, []float64{0, 0, 0}},
		{"all established", ScenarioEcho, 1000, []int{3, 3, 4}, []float64{300, 300, 400}},
		{"by established", ScenarioRoute, 1000, []int{3, 0, 1}, []float64{750, 0, 250}},
		{"none established", ScenarioSoak, 1000, []int{0, 0, 0}, []float64{0, 0, 0}},
		{"overload: by requested", ScenarioOverload, 1000, []int{0, 0, 0}, []float64{300, 300, 400}},
	} {
		got := partRates(Config{Scenario: tt.scenario, Rate: tt.rate}, specs, tt.est)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: partRates = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestOneProcessRunsInProcess: without --procs, and with --procs 1, the part runs in
// this process; no worker is started (exe cannot be executed).
func TestOneProcessRunsInProcess(t *testing.T) {
	addr := startServer(t, server.Config{})
	r := runner{exe: filepath.Join(t.TempDir(), "no-such-binary")}
	for _, procs := range [][]string{nil, {"--procs", "1"}} {
		args := append([]string{"echo", "--addr", addr, "--conns", "2", "--duration", "300ms"}, procs...)
		m, _ := runBench(t, r, args...)
		if num(t, m, "connections.established") != 2 || num(t, m, "messages.received") == 0 {
			t.Fatalf("%v: established %v received %v", procs, num(t, m, "connections.established"),
				num(t, m, "messages.received"))
		}
	}
}

func TestEchoFloor(t *testing.T) {
	addr := startServer(t, server.Config{})
	m, _ := runBench(t, inProcess(), "echo", "--addr", addr, "--conns", "2", "--duration", "500ms", "--floor")
	if ft, ratio := num(t, m, "floor.throughput_msgs_per_s"), num(t, m, "floor.ratio"); ft <= 0 || ratio <= 0 {
		t.Fatalf("floor throughput %v ratio %v; want both positive", ft, ratio)
	}
}

func TestConnect(t *testing.T) {
	addr := startServer(t, server.Config{MaxConnections: 30})
	m, _ := runBench(t, inProcess(), "connect", "--addr", addr, "--conns", "40", "--ramp", "400",
		"--duration", "300ms", "--server-pid", strconv.Itoa(os.Getpid()))
	if est, ref := num(t, m, "connections.established"), num(t, m, "connections.refused"); est != 30 || ref != 10 {
		t.Fatalf("established %v refused %v; want 30 and 10 (max-connections 30)", est, ref)
	}
	if busy := num(t, m, "connections.refused_by_code.BUSY"); busy != 10 {
		t.Fatalf("refused_by_code.BUSY = %v; want 10", busy)
	}
	if num(t, m, "connect.accept_rate_per_s") <= 0 {
		t.Fatal("no accept rate")
	}
	// The ramp accounts for every connection's outcome, second by second.
	var est, failed float64
	for _, p := range get(t, m, "connect.ramp").([]any) {
		pt := p.(map[string]any)
		est += pt["established"].(float64)
		failed += pt["failed"].(float64)
	}
	if est != 30 || failed != 10 {
		t.Fatalf("ramp sums to %v established, %v failed; want 30 and 10", est, failed)
	}
	if peak := num(t, m, "connect.peak_rate_per_s"); peak <= 0 || peak > 40 {
		t.Fatalf("peak_rate_per_s %v; want 1..40", peak)
	}
	if lo, hi := num(t, m, "ports.ephemeral_lo"), num(t, m, "ports.ephemeral_hi"); lo <= 0 || hi < lo {
		t.Fatalf("ports.ephemeral_lo %v, ephemeral_hi %v; want the range from /proc", lo, hi)
	}
	get(t, m, "server.rss_per_conn_bytes")
}

// TestConnectRegister holds connect's connections with --register: while they are held,
// the server has one name per connection, over worker parts too.
func TestConnectRegister(t *testing.T) {
	s := testserver.Start(t, server.Config{Loops: runtime.GOMAXPROCS(0)})
	addr := s.Addr().String()
	const conns = 12
	done := make(chan map[string]any, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := mainWith([]string{"connect", "--addr", addr, "--conns", strconv.Itoa(conns), "--procs", "2",
			"--register", "--duration", "3s", "--json", "-"}, &stdout, &stderr, inProcess())
		var m map[string]any
		if code == 0 && json.Unmarshal(stdout.Bytes(), &m) == nil {
			done <- m
			return
		}
		t.Errorf("bench connect --register exited %d; stderr:\n%s", code, stderr.String())
		done <- nil
	}()
	// Watched until the bench ends (it always does), so that its goroutine never reports
	// after the test: a failed wait on the hold's window (3 s) used to end the test first,
	// and the goroutine's Errorf then panicked (seen once, with a 95K-connection cluster
	// bench running beside the tests and a 1 s hold).
	held := false
	var m map[string]any
watch:
	for {
		select {
		case m = <-done:
			break watch
		case <-time.After(2 * time.Millisecond):
			held = held || s.Stats().Names == conns
		}
	}
	if m == nil {
		return // the goroutine said why
	}
	if !held {
		t.Fatalf("the server never held one name per held connection (%d) at once", conns)
	}
	if est := num(t, m, "connections.established"); est != conns {
		t.Fatalf("established %v; want %d", est, conns)
	}
	if !get(t, m, "config.register").(bool) {
		t.Fatal("config.register not true in the JSON")
	}
	testserver.WaitFor(t, "names released after the hold", func() bool { return s.Stats().Names == 0 })
}

func TestConnectRefusesRemote(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainWith([]string{"connect", "--addr", "192.0.2.1:7400"}, &stdout, &stderr, inProcess()); code != 2 {
		t.Fatalf("exit %d; want 2 (usage) for a non-loopback address", code)
	}
	if !strings.Contains(stderr.String(), "loopback") {
		t.Fatalf("stderr %q does not explain the refusal", stderr.String())
	}
}

func TestNothingToConnectToFails(t *testing.T) {
	// A listener closed at once leaves a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	// An hour's --duration: a run that waited for it instead of failing at once would
	// hit the test binary's timeout. No tighter bound: on a busy machine even the fast
	// failure took 5.5 s once.
	code := mainWith([]string{"echo", "--addr", addr, "--conns", "2", "--duration", "1h"},
		&stdout, &stderr, inProcess())
	if code != 1 {
		t.Fatalf("exit %d; want 1 when nothing connects; stderr:\n%s", code, stderr.String())
	}
	if el := time.Since(start); el > 30*time.Minute {
		t.Errorf("took %v; want a failure without the 1h --duration", el)
	}
	errText := stderr.String()
	if strings.Contains(errText, "load starts") || strings.Contains(errText, "context canceled") {
		t.Errorf("stderr says the load started, or reports the abort's own echoes:\n%s", errText)
	}
	if !strings.Contains(stdout.String(), "established 0, refused 0, failed 2") {
		t.Errorf("summary does not count the failed connections:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), "failed dial ECONNREFUSED") {
		t.Errorf("summary does not give the failures' cause:\n%s", stdout.String())
	}
	for _, w := range []string{"no connection to " + addr, "connection refused", "is a switchboard node listening"} {
		if !strings.Contains(errText, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errText)
		}
	}
}

// TestRoute: every routed message and request sent is received, none lost, with write
// coalescing off (the default) and on (the throughput profile's 16 KiB: output of busy
// rounds waits a round, or its timer).
func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		coalesce int
	}{{"send", 0}, {"request", 0}, {"send", 16 << 10}, {"request", 16 << 10}} {
		t.Run(fmt.Sprintf("%s/write-coalesce=%d", tc.mode, tc.coalesce), func(t *testing.T) {
			addr := startServer(t, server.Config{Loops: 2, WriteCoalesce: tc.coalesce})
			m, _ := runBench(t, inProcess(), "route", "--addr", addr, "--conns", "16", "--mode", tc.mode,
				"--pipeline", "4", "--duration", "1s")
			sent, recv := num(t, m, "messages.sent"), num(t, m, "messages.received")
			if recv == 0 || num(t, m, "messages.lost") != 0 || sent != recv {
				t.Fatalf("sent %v received %v lost %v", sent, recv, num(t, m, "messages.lost"))
			}
			if num(t, m, "latency_us.p99") <= 0 {
				t.Fatal("no latency")
			}
		})
	}
}

func TestOverload(t *testing.T) {
	addr := startServer(t, server.Config{MaxConnections: 10})
	m, _ := runBench(t, inProcess(), "overload", "--addr", addr, "--conns", "20", "--baseline", "300ms",
		"--duration", "500ms", "--recover", "700ms", "--probe-rate", "100", "--server-pid", strconv.Itoa(os.Getpid()))
	// The probe holds one of the 10 slots; of 20 spike connections 9 fit.
	if ref := num(t, m, "connections.refused_by_code.BUSY"); ref != 11 {
		t.Fatalf("refused BUSY %v; want 11", ref)
	}
	if num(t, m, "server.rss_bytes_peak") <= 0 {
		t.Fatal("no RSS peak")
	}
	if num(t, m, "overload.baseline_p99_us") <= 0 {
		t.Fatal("no probe baseline")
	}
	num(t, m, "overload.recovery_s")
	if n := len(get(t, m, "overload.windows").([]any)); n != 15 {
		t.Fatalf("%d probe windows; want 15 (1.5s / 100ms)", n)
	}
}

func TestSoak(t *testing.T) {
	addr := startServer(t, server.Config{})
	m, stderr := runBench(t, inProcess(), "soak", "--addr", addr, "--conns", "6", "--rate", "600",
		"--duration", "2s", "--interval", "1s")
	if sent := num(t, m, "messages.sent"); sent < 1000 || sent > 1300 {
		t.Fatalf("sent %v at 600/s for 2s; want about 1200", sent)
	}
	if num(t, m, "messages.lost") != 0 {
		t.Fatalf("lost %v", num(t, m, "messages.lost"))
	}
	if strings.Count(stderr, "msgs/s") < 2 {
		t.Fatalf("want a status line per interval on stderr, got:\n%s", stderr)
	}
	if n := len(get(t, m, "series").([]any)); n != 2 {
		t.Fatalf("series has %d points; want 2", n)
	}
}

func TestProcsInProcess(t *testing.T) {
	addr1 := startServer(t, server.Config{})
	addr2 := startServer(t, server.Config{})
	m, _ := runBench(t, inProcess(), "route", "--addr", addr1+","+addr2, "--conns", "6", "--procs", "3",
		"--duration", "500ms")
	if num(t, m, "connections.established") != 6 || num(t, m, "messages.received") == 0 {
		t.Fatalf("established %v received %v", num(t, m, "connections.established"), num(t, m, "messages.received"))
	}
}

// TestProcsReexec runs --procs with real worker processes (this test binary re-executed)
// and the floor as a child process.
func TestProcsReexec(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	addr := startServer(t, server.Config{})
	r := runner{exe: exe, env: []string{childEnv + "=1"}}
	plot := filepath.Join(t.TempDir(), "echo.svg")
	m, _ := runBench(t, r, "echo", "--addr", addr, "--conns", "4", "--procs", "2", "--duration", "1s",
		"--floor", "--plot", plot)
	if num(t, m, "connections.established") != 4 || num(t, m, "messages.received") == 0 {
		t.Fatalf("established %v received %v", num(t, m, "connections.established"), num(t, m, "messages.received"))
	}
	if num(t, m, "floor.ratio") <= 0 {
		t.Fatal("no floor ratio")
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Fatalf("plot: %v", err)
	}
}

// TestServerFiguresFromAdmin reads the server's RSS and CPU from the real admin endpoint
// (process_resident_memory_bytes, process_cpu_seconds_total) rather than /proc.
func TestServerFiguresFromAdmin(t *testing.T) {
	srv := testserver.Start(t, server.Config{})
	admin := httptest.NewServer(srv.AdminHandler())
	defer admin.Close()
	m, _ := runBench(t, inProcess(), "connect", "--addr", srv.Addr().String(), "--conns", "20",
		"--duration", "1s", "--admin", strings.TrimPrefix(admin.URL, "http://"))
	if src, _ := get(t, m, "server.source").(string); !strings.HasPrefix(src, "admin:") {
		t.Fatalf("server figures from %v; want the admin endpoint", src)
	}
	if num(t, m, "server.rss_bytes_after") <= 0 {
		t.Fatalf("no RSS from /metrics: %v", get(t, m, "server"))
	}
}

func TestPingsPerTick(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		n           int
		every, tick time.Duration
		want        int
	}{
		{0, 10 * time.Second, 100 * ms, 0},
		{1, 10 * time.Second, 100 * ms, 1},
		{100, 10 * time.Second, 100 * ms, 1},
		{101, 10 * time.Second, 100 * ms, 2},
		{16_667, 30 * time.Second, 100 * ms, 56}, // 16,667 / 300 ticks, rounded up
		{100_000, 10 * time.Second, 100 * ms, 1000},
		{50, 0, 100 * ms, 50},       // an interval below a tick is one tick
		{50, 50 * ms, 100 * ms, 50}, // likewise
		{7, 250 * ms, 100 * ms, 3},  // 2.8 rounded up
	} {
		if got := pingsPerTick(c.n, c.every, c.tick); got != c.want {
			t.Errorf("pingsPerTick(%d, %v, %v) = %d; want %d", c.n, c.every, c.tick, got, c.want)
		}
	}
}
