package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/internal/wait"
	"github.com/switchboard/switchboard/server"
)

// startAdminNode starts an in-process node with its admin endpoints on an HTTP listener,
// as serve does, and returns the node's client and admin addresses.
func startAdminNode(t *testing.T) (addr, admin string) {
	t.Helper()
	srv := testserver.Start(t, server.Config{})
	hs := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(hs.Close)
	return srv.Addr().String(), strings.TrimPrefix(hs.URL, "http://")
}

// scrapeTest reads a node's /metrics in the test.
func scrapeTest(t *testing.T, admin string) metricSet {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// parseLogLine splits top's key=value line.
func parseLogLine(t *testing.T, line string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("field %q of %q", f, line)
		}
		kv[k] = v
	}
	return kv
}

func float(t *testing.T, kv map[string]string, key string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(kv[key], 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, kv[key], err)
	}
	return f
}

func sumOf(m metricSet, name string) float64 {
	v, _ := m.sum(name)
	return v
}

func routedOf(m metricSet) float64 {
	var n float64
	for _, name := range routedMetrics {
		v, _ := m.get(name)
		n += v
	}
	return n
}

// TestTopUnderLoad runs top for two refreshes (not a terminal: one line per refresh)
// against a node carrying known connections and traffic, and checks its figures against
// /metrics scraped by the test, and its rates against the differences of its own totals
// over its own window.
func TestTopUnderLoad(t *testing.T) {
	addr, admin := startAdminNode(t)
	ctx := context.Background()
	sink := dialTest(t, addr, client.Config{Name: "sink", OnRequest: func(r *client.Request) { _ = r.Reply(r.Payload) }})
	if err := sink.Register(ctx, "sink"); err != nil {
		t.Fatal(err)
	}
	const senders = 4
	var cs []*client.Client
	for range senders {
		cs = append(cs, dialTest(t, addr, client.Config{Name: "load"}))
	}
	wait.For(t, "5 connections", func() bool { v, _ := scrapeTest(t, admin).get("switchboard_connections"); return v == 5 })

	// Load until top is done: messages, requests and NO_ROUTE refusals from every sender.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.SendAck(ctx, "sink", []byte("m"))
				_, _ = c.Request(ctx, "sink", []byte("r"))
				_ = c.SendAck(ctx, "nosuch", []byte("x"))
			}
		})
	}
	before := scrapeTest(t, admin)
	var out, errOut bytes.Buffer
	// The window is 1 s, not 100 ms: the checks below need traffic in it, and on a loaded
	// machine the senders were once all descheduled for a 100 ms window.
	code := run([]string{"top", "--admin", admin, "--count", "2", "--interval", "1s"},
		&cli{stdout: &out, stderr: &errOut, environ: testEnv()})
	after := scrapeTest(t, admin)
	close(stop)
	wg.Wait()
	if code != exitOK {
		t.Fatalf("exit %d; stderr %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines; want 2 (one node, two refreshes):\n%s", len(lines), out.String())
	}
	l1, l2 := parseLogLine(t, lines[0]), parseLogLine(t, lines[1])
	for _, l := range []map[string]string{l1, l2} {
		if l["node"] != admin || l["connections"] != "5" || l["zone"] != "GREEN" {
			t.Errorf("node %s connections %s zone %s; want %s, 5, GREEN", l["node"], l["connections"], l["zone"], admin)
		}
		if cmax, _ := after.get("switchboard_connections_max"); float(t, l, "connections_max") != cmax ||
			float(t, l, "headroom") != cmax-5 {
			t.Errorf("connections_max %s headroom %s; want %v and %v", l["connections_max"], l["headroom"], cmax, cmax-5)
		}
	}
	// Totals lie between the test's scrapes and grow from one refresh to the next.
	for _, k := range []struct {
		key    string
		metric func(metricSet) float64
	}{
		{"frames_in", func(m metricSet) float64 { return sumOf(m, "switchboard_frames_in_total") }},
		{"errors", func(m metricSet) float64 { return sumOf(m, "switchboard_errors_total") }},
		{"routed", routedOf},
	} {
		lo, v1, v2, hi := k.metric(before), float(t, l1, k.key), float(t, l2, k.key), k.metric(after)
		if !(lo <= v1 && v1 < v2 && v2 <= hi) {
			t.Errorf("%s: /metrics before %v, top %v then %v, /metrics after %v; want them in order, top's growing",
				k.key, lo, v1, v2, hi)
		}
	}
	// The second refresh's rates are the differences of the totals over the window.
	window := float(t, l2, "window")
	if window <= 0 {
		t.Fatalf("window %v", window)
	}
	for _, k := range []struct{ rate, total string }{{"in_fps", "frames_in"}, {"out_fps", "frames_out"}, {"errors_ps", "errors"}, {"routed_ps", "routed"}} {
		want := (float(t, l2, k.total) - float(t, l1, k.total)) / window
		if got := float(t, l2, k.rate); math.Abs(got-want) > 1e-9*want {
			t.Errorf("%s = %v; want (%s %s - %s) / window %v = %v", k.rate, got, k.total, l2[k.total], l1[k.total], window, want)
		}
	}
	if want := "NO_ROUTE:" + strconv.FormatFloat(float(t, l2, "errors_ps"), 'g', 4, 64); l2["errors_by_code"] != want {
		t.Errorf("errors_by_code %s; want %s (every error is a NO_ROUTE)", l2["errors_by_code"], want)
	}
	if l2["p99_ms"] == "-" || float(t, l2, "p99_ms") <= 0 || float(t, l2, "out_fps") <= 0 || l2["memory_limit"] == "" {
		t.Errorf("p99_ms %s out_fps %s memory_limit %s; want a latency, frames going out and a limit",
			l2["p99_ms"], l2["out_fps"], l2["memory_limit"])
	}

	// Quiet: top's totals are exactly the node's.
	out.Reset()
	code = run([]string{"top", "--admin", admin, "--count", "1", "--interval", "10ms", "--json"},
		&cli{stdout: &out, stderr: &errOut, environ: testEnv()})
	now := scrapeTest(t, admin)
	var v nodeView
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || code != exitOK {
		t.Fatalf("exit %d; %v; stdout %s", code, err, out.String())
	}
	if v.FramesIn != sumOf(now, "switchboard_frames_in_total") || v.Errors != sumOf(now, "switchboard_errors_total") ||
		v.Routed != routedOf(now) || v.Conns != 5 || v.InFPS == nil || *v.InFPS != 0 || v.P99 != nil {
		t.Errorf("quiet node: %+v; want the node's totals %v %v %v, 5 connections, no traffic", v,
			sumOf(now, "switchboard_frames_in_total"), sumOf(now, "switchboard_errors_total"), routedOf(now))
	}
}

// TestTopNodes: several nodes, one of them down (named with its error); --sort node
// orders them by address; exit 1 only when none answers.
func TestTopNodes(t *testing.T) {
	_, a := startAdminNode(t)
	_, b := startAdminNode(t)
	dead := "127.0.0.1:1"
	var out bytes.Buffer
	code := run([]string{"top", "--admin", b + "," + dead + "," + a, "--count", "1", "--interval", "10ms", "--sort", "node"},
		&cli{stdout: &out, stderr: io.Discard, environ: testEnv()})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if code != exitOK || len(lines) != 3 {
		t.Fatalf("exit %d; want 0 and 3 lines:\n%s", code, out.String())
	}
	var order []string
	for _, l := range lines {
		order = append(order, strings.Fields(l)[1])
	}
	sorted := []string{"node=" + a, "node=" + b, "node=" + dead}
	slices.Sort(sorted)
	if strings.Join(order, " ") != strings.Join(sorted, " ") || !strings.Contains(out.String(), "connection refused") {
		t.Errorf("lines:\n%s\nwant nodes in order %v, the dead one with its error", out.String(), sorted)
	}
	code = run([]string{"top", "--admin", dead, "--count", "1", "--interval", "10ms"},
		&cli{stdout: io.Discard, stderr: io.Discard, environ: testEnv()})
	if code != exitFailure {
		t.Errorf("only a dead node: exit %d; want 1", code)
	}
}

// TestTopScreen: on a terminal top clears the screen and draws a table.
func TestTopScreen(t *testing.T) {
	var b bytes.Buffer
	in, errs := 1234.5, 2.0
	tp := &top{interval: time.Second, sortBy: "zone", out: &b}
	tp.draw([]nodeView{
		{Node: "n1:7401", Zone: "YELLOW", Worst: "queued", WorstValue: 0.65, Conns: 10, ConnsMax: 100, Headroom: 90,
			InFPS: &in, ErrorsPS: &errs, ErrorsByPS: map[string]float64{"BUSY": 2}, Mem: 1 << 20, MemLimit: 1 << 30},
		{Node: "n2:7401", Error: "connection refused"},
	})
	s := b.String()
	for _, want := range []string{"\x1b[H\x1b[2J", "NODE", "ZONE", "HEADROOM", "P99", "YELLOW", "queued 65%", "1234",
		"BUSY:2", "1.0MiB/1.0GiB 0%", "DOWN", "connection refused"} {
		if !strings.Contains(s, want) {
			t.Errorf("screen lacks %q:\n%s", want, s)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP x\n# TYPE x counter\nx 1\ny{a=\"b c\",d=\"e}\\\"f\"} 2.5 1700000000\n\nz{le=\"+Inf\"} +Inf\n"
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m["x"] != 1 || m[`y{a="b c",d="e}\"f"}`] != 2.5 || !math.IsInf(m[`z{le="+Inf"}`], 1) {
		t.Errorf("parsed %v", m)
	}
	for _, bad := range []string{"x{a=\"b\" 1\n", "x one\n", "lonely\n"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed; want an error", bad)
		}
	}
}

func TestQuantileDelta(t *testing.T) {
	before := map[string]float64{"0.1": 10, "1": 20, "+Inf": 20}
	tests := []struct {
		name string
		now  map[string]float64
		q    float64
		want float64 // NaN: nil
	}{
		{"nothing new", before, 0.99, math.NaN()},
		{"all in the first bucket", map[string]float64{"0.1": 110, "1": 120, "+Inf": 120}, 0.5, 0.05},
		{"interpolated in the second", map[string]float64{"0.1": 10, "1": 120, "+Inf": 120}, 0.99, 0.1 + 0.9*0.99},
		{"in +Inf: the highest bound", map[string]float64{"0.1": 10, "1": 20, "+Inf": 30}, 0.99, 1},
		{"counter reset", map[string]float64{"0.1": 0, "1": 0, "+Inf": 0}, 0.99, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := quantileDelta(tt.q, tt.now, before)
			switch {
			case math.IsNaN(tt.want) && got != nil:
				t.Errorf("got %v; want nil", *got)
			case !math.IsNaN(tt.want) && (got == nil || math.Abs(*got-tt.want) > 1e-12):
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestTopUsage(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "top", "--help")
	if code != exitOK || !strings.Contains(stdout, "--admin addresses") || !strings.Contains(stdout, "GOMEMLIMIT") {
		t.Errorf("--help: exit %d; stdout %q", code, stdout)
	}
	for _, args := range [][]string{{"top", "--sort", "size"}, {"top", "--interval", "0s"}, {"top", "x"}, {"top", "--admin", ","}} {
		_, stderr, code := runCLI(t, nil, args...)
		if code != exitUsage || !strings.Contains(stderr, "see 'switchboard top --help'") {
			t.Errorf("%q: exit %d; stderr %q", args, code, stderr)
		}
	}
}
