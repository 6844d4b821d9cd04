package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/internal/testserver"
	"github.com/switchboard/switchboard/internal/wait"
	"github.com/switchboard/switchboard/server"
)

// lockedBuffer is a buffer a command writes from its goroutines while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode starts an in-process node and returns its client address.
func startNode(t *testing.T, cfg server.Config) string {
	t.Helper()
	return testserver.Start(t, cfg).Addr().String()
}

// runClientCmd runs a client command in-process against addr (through --server), with
// stdin.
func runClientCmd(t *testing.T, addr, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args[:1:1], append([]string{"--server", addr}, args[1:]...)...)
	code = run(args, &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, environ: testEnv(env...)})
	return out.String(), errOut.String(), code
}

// dialTest connects a Go client that is closed when the test ends.
func dialTest(t *testing.T, addr string, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), []string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// responder registers name on a Go client that answers requests with reply(payload); a
// nil reply leaves them unanswered.
func responder(t *testing.T, addr, name string, reply func([]byte) []byte) *client.Client {
	t.Helper()
	c := dialTest(t, addr, client.Config{Name: "responder", OnRequest: func(r *client.Request) {
		if reply != nil {
			_ = r.Reply(reply(r.Payload))
		}
	}})
	if err := c.Register(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequest(t *testing.T) {
	addr := startNode(t, server.Config{})
	responder(t, addr, "upper", bytes.ToUpper)
	responder(t, addr, "silent", nil)
	tests := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		stdout     string // exact
		stderrHas  string
		jsonFields map[string]any
	}{
		{"argument", "", []string{"request", "upper", "hello"}, exitOK, "HELLO\n", "", nil},
		{"flags after the name", "", []string{"request", "upper", "hello", "--raw"}, exitOK, "HELLO", "", nil},
		{"stdin", "from stdin\n", []string{"request", "upper"}, exitOK, "FROM STDIN\n", "", nil},
		{"dash payload after --", "", []string{"request", "upper", "--", "-x"}, exitOK, "-X\n", "", nil},
		{"no route", "", []string{"request", "nosuch", "x"}, exitNoRoute, "", "NO_ROUTE: no connection owns the name (node " + addr + ")", nil},
		{"timeout", "", []string{"request", "--timeout", "200ms", "silent", "x"}, exitTimeout, "", "TIMEOUT", nil},
		{"json", "", []string{"request", "--json", "upper", "hi"}, exitOK, "", "", map[string]any{"name": "upper", "payload": "HI", "node": addr}},
		{"json no route", "", []string{"request", "--json", "nosuch", "hi"}, exitNoRoute, "", "",
			map[string]any{"error": map[string]any{"code": "NO_ROUTE", "reason": "no connection owns the name", "node": addr,
				"error": "switchboard: NO_ROUTE: no connection owns the name", "exit": float64(exitNoRoute)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runClientCmd(t, addr, tt.stdin, nil, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d; want %d; stdout %q; stderr %q", code, tt.code, stdout, stderr)
			}
			if tt.jsonFields != nil {
				var got map[string]any
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatalf("stdout %q: %v", stdout, err)
				}
				for k, want := range tt.jsonFields {
					if g, _ := json.Marshal(got[k]); string(g) != mustJSON(t, want) {
						t.Errorf("%s = %s; want %s", k, g, mustJSON(t, want))
					}
				}
			} else if stdout != tt.stdout {
				t.Errorf("stdout %q; want %q", stdout, tt.stdout)
			}
			if !strings.Contains(stderr, tt.stderrHas) {
				t.Errorf("stderr %q; want it to contain %q", stderr, tt.stderrHas)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestClientConnectErrors: a node that refuses the HELLO is named with its reason (exit
// refused); an unreachable one with the dial error (exit 1); the token comes from
// --token-file or SWITCHBOARD_TOKEN.
func TestClientConnectErrors(t *testing.T) {
	addr := startNode(t, server.Config{Token: "s3cret"})
	responder := dialTest(t, addr, client.Config{Token: "s3cret", OnRequest: func(r *client.Request) { _ = r.Reply(r.Payload) }})
	if err := responder.Register(context.Background(), "echo"); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		addr      string
		env       []string
		args      []string
		code      int
		stderrHas []string
	}{
		{"no token", addr, nil, []string{"request", "echo", "x"}, exitRefused, []string{"UNAUTHORIZED", addr}},
		{"wrong token", addr, []string{"SWITCHBOARD_TOKEN=nope"}, []string{"ping", "--count", "1"}, exitRefused, []string{"UNAUTHORIZED", addr}},
		{"token from env", addr, []string{"SWITCHBOARD_TOKEN=s3cret"}, []string{"request", "echo", "x"}, exitOK, nil},
		{"token file beats env", addr, []string{"SWITCHBOARD_TOKEN=nope"}, []string{"request", "--token-file", good, "echo", "x"}, exitOK, nil},
		{"empty token file", addr, nil, []string{"request", "--token-file", empty, "echo", "x"}, exitUsage,
			[]string{"the first line is empty", "see 'switchboard request --help'"}},
		{"missing token file", addr, nil, []string{"send", "--token-file", empty + ".nope", "echo", "x"}, exitUsage, []string{"no such file"}},
		{"unreachable", "127.0.0.1:1", nil, []string{"send", "echo", "x"}, exitFailure, []string{"127.0.0.1:1", "connection refused"}},
		{"second address", "127.0.0.1:1," + addr, []string{"SWITCHBOARD_TOKEN=s3cret"}, []string{"request", "echo", "x"}, exitOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runClientCmd(t, tt.addr, "", tt.env, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d; want %d; stdout %q; stderr %q", code, tt.code, stdout, stderr)
			}
			for _, want := range tt.stderrHas {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q; want it to contain %q", stderr, want)
				}
			}
		})
	}
}

// TestServerFromEnv: without --server, SWITCHBOARD_SERVER names the nodes.
func TestServerFromEnv(t *testing.T) {
	addr := startNode(t, server.Config{})
	stdout, stderr, code := runCLI(t, []string{"SWITCHBOARD_SERVER=" + addr}, "ping", "--count", "1")
	if code != exitOK || !strings.Contains(stdout, "pong from "+addr) {
		t.Fatalf("exit %d; stdout %q; stderr %q", code, stdout, stderr)
	}
}

func TestSend(t *testing.T) {
	addr := startNode(t, server.Config{})
	var mu sync.Mutex
	var got []string
	sink := dialTest(t, addr, client.Config{OnMessage: func(m client.Message) {
		mu.Lock()
		got = append(got, m.From+":"+string(m.Payload))
		mu.Unlock()
	}})
	if err := sink.Register(context.Background(), "sink"); err != nil {
		t.Fatal(err)
	}
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}

	stdout, stderr, code := runClientCmd(t, addr, "", nil, "send", "sink", "one")
	if code != exitOK || stdout != "" {
		t.Fatalf("send: exit %d; stdout %q; stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runClientCmd(t, addr, "", nil, "send", "sink", "many", "--ack", "--count", "5")
	if code != exitOK || !strings.Contains(stdout, "sent 5 messages of 4 bytes to sink") {
		t.Fatalf("send --count: exit %d; stdout %q; stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runClientCmd(t, addr, "piped", nil, "send", "--json", "sink")
	if code != exitOK || !strings.Contains(stdout, `"sent":1`) {
		t.Fatalf("send --json: exit %d; stdout %q; stderr %q", code, stdout, stderr)
	}
	wait.For(t, "7 messages at the sink", func() bool { return len(received()) == 7 })
	want := []string{"switchboard-send:one", "switchboard-send:many", "switchboard-send:many", "switchboard-send:many",
		"switchboard-send:many", "switchboard-send:many", "switchboard-send:piped"}
	if g := strings.Join(received(), " "); g != strings.Join(want, " ") {
		t.Errorf("received %s; want %s", g, strings.Join(want, " "))
	}

	_, stderr, code = runClientCmd(t, addr, "", nil, "send", "--ack", "nosuch", "x")
	if code != exitNoRoute || !strings.Contains(stderr, "NO_ROUTE") {
		t.Errorf("send --ack to no one: exit %d; stderr %q; want %d and NO_ROUTE", code, stderr, exitNoRoute)
	}
	// Without --ack nothing tells the sender.
	if _, stderr, code = runClientCmd(t, addr, "", nil, "send", "nosuch", "x"); code != exitOK {
		t.Errorf("send to no one: exit %d; stderr %q; want 0", code, stderr)
	}
}

// startListen runs `switchboard listen` in-process until it exits by itself (--count) or
// the test ends, and waits for it to register its names.
func startListen(t *testing.T, addr string, names []string, flags ...string) (stdout *lockedBuffer, done <-chan int) {
	t.Helper()
	args := append(names, flags...)
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	ch := make(chan int, 1)
	go func() {
		ch <- run(append([]string{"listen", "--server", addr}, args...),
			&cli{stdout: out, stderr: errOut, environ: testEnv()})
	}()
	wait.For(t, "listen to register", func() bool {
		select {
		case code := <-ch:
			t.Fatalf("listen exited %d; stderr:\n%s", code, errOut.String())
		default:
		}
		return strings.Count(errOut.String(), "listening on") == len(names)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listen stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		}
	})
	return out, ch
}

// waitExit waits for listen to exit.
func waitExit(t *testing.T, done <-chan int) int {
	t.Helper()
	var code atomic.Int64
	code.Store(-1)
	wait.For(t, "listen to exit", func() bool {
		select {
		case c := <-done:
			code.Store(int64(c))
			return true
		default:
			return false
		}
	})
	return int(code.Load())
}

func TestListen(t *testing.T) {
	addr := startNode(t, server.Config{})
	ctx := context.Background()
	c := dialTest(t, addr, client.Config{Name: "tester"})

	t.Run("echo", func(t *testing.T) {
		// Two names; a message and a request (counted once answered) make 2 events.
		out, done := startListen(t, addr, []string{"a", "b"}, "--echo", "--count", "2")
		if err := c.Send(ctx, "a", []byte("note")); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Request(ctx, "b", []byte("ping?"))
		if err != nil || string(resp) != "ping?" {
			t.Fatalf("Request = %q, %v; want the payload back", resp, err)
		}
		if code := waitExit(t, done); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		want := []string{`MESSAGE to=a from="tester" conn=`, `len=4 "note"`, `INCOMING to=b from="tester"`,
			`len=5 "ping?"`, `REPLY to=b from="tester"`}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("output lacks %q:\n%s", w, out.String())
			}
		}
		if len(lines) != 3 {
			t.Errorf("%d lines; want 3:\n%s", len(lines), out.String())
		}
	})

	t.Run("reply-with", func(t *testing.T) {
		out, done := startListen(t, addr, []string{"shell"}, "--json", "--count", "1",
			"--reply-with", `printf '%s:' "$SWITCHBOARD_NAME"; tr a-z A-Z`)
		resp, err := c.Request(ctx, "shell", []byte("loud"))
		if err != nil || string(resp) != "shell:LOUD" {
			t.Fatalf("Request = %q, %v; want shell:LOUD", resp, err)
		}
		if code := waitExit(t, done); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		var events []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			events = append(events, ev)
		}
		if len(events) != 2 || events[0]["event"] != "INCOMING" || events[0]["payload"] != "loud" ||
			events[1]["event"] != "REPLY" || events[1]["payload"] != "shell:LOUD" || events[1]["from"] != "tester" {
			t.Errorf("events %v", events)
		}
	})

	t.Run("failing command", func(t *testing.T) {
		out, done := startListen(t, addr, []string{"broken"}, "--json", "--count", "1", "--reply-with", "exit 3")
		short := dialTest(t, addr, client.Config{RequestTimeout: 300 * time.Millisecond})
		if _, err := short.Request(ctx, "broken", []byte("x")); !errorsIsTimeout(err) {
			t.Fatalf("Request err %v; want TIMEOUT", err)
		}
		if code := waitExit(t, done); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		if !strings.Contains(out.String(), `"event":"NO_REPLY"`) || !strings.Contains(out.String(), "exit status 3") {
			t.Errorf("output lacks the failed command:\n%s", out.String())
		}
	})

	t.Run("name taken", func(t *testing.T) {
		if err := c.Register(ctx, "taken"); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runClientCmd(t, addr, "", nil, "listen", "taken")
		if code != exitRefused || !strings.Contains(stderr, "taken: switchboard: NAME_TAKEN") && !strings.Contains(stderr, "NAME_TAKEN") {
			t.Errorf("exit %d; stderr %q; want %d and NAME_TAKEN", code, stderr, exitRefused)
		}
	})
}

func errorsIsTimeout(err error) bool { return exitCode(err) == exitTimeout }

func TestPing(t *testing.T) {
	addr := startNode(t, server.Config{})
	stdout, stderr, code := runClientCmd(t, addr, "", nil, "ping", "--count", "3", "--interval", "10ms")
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	for _, want := range []string{"PING " + addr, "pong from " + addr + ": seq=1 time=", "seq=3 time=",
		"3 sent, 3 received, 0% lost", "rtt min/avg/max/mdev = "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = runClientCmd(t, addr, "", nil, "ping", "--json", "--count", "2", "--interval", "10ms")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != exitOK || len(lines) != 3 {
		t.Fatalf("exit %d; stdout %q; want 3 lines", code, stdout)
	}
	var sum struct {
		Sent     int      `json:"sent"`
		Received int      `json:"received"`
		Loss     float64  `json:"loss_percent"`
		Min      *float64 `json:"min_ms"`
		Avg      *float64 `json:"avg_ms"`
		Max      *float64 `json:"max_ms"`
		Mdev     *float64 `json:"mdev_ms"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 2 || sum.Received != 2 || sum.Loss != 0 || sum.Min == nil || sum.Avg == nil || sum.Max == nil ||
		sum.Mdev == nil || *sum.Min > *sum.Avg || *sum.Avg > *sum.Max {
		t.Errorf("summary %s", lines[2])
	}
}

// TestRTTStats: mdev is the standard deviation, as ping(8) computes it.
func TestRTTStats(t *testing.T) {
	var s rttStats
	for _, ms := range []int{1, 2, 3, 6} {
		s.add(time.Duration(ms) * time.Millisecond)
	}
	avg, mdev := s.summary()
	if avg != 3 || math.Abs(mdev-math.Sqrt(3.5)) > 1e-9 || s.min != time.Millisecond || s.max != 6*time.Millisecond {
		t.Errorf("avg %v mdev %v min %v max %v; want 3, %v, 1ms, 6ms", avg, mdev, s.min, s.max, math.Sqrt(3.5))
	}
}

// TestClientUsage: the shared dialect — --help on stdout with the exit codes, bad flags
// and arguments a short line and a pointer on stderr, exit 2.
func TestClientUsage(t *testing.T) {
	for _, cmd := range []string{"send", "request", "listen", "ping"} {
		t.Run(cmd, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, cmd, "--help")
			if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage: switchboard "+cmd) ||
				!strings.Contains(stdout, "3  no route") || !strings.Contains(stdout, "env SWITCHBOARD_SERVER") {
				t.Errorf("--help: exit %d; stdout %q; stderr %q", code, stdout, stderr)
			}
			_, stderr, code = runCLI(t, nil, cmd, "--bogus")
			if code != exitUsage || !strings.HasSuffix(stderr, "see 'switchboard "+cmd+" --help'\n") ||
				!strings.Contains(stderr, "--bogus") {
				t.Errorf("--bogus: exit %d; stderr %q", code, stderr)
			}
		})
	}
	for _, args := range [][]string{
		{"send"}, {"send", "a", "b", "c"}, {"send", "--count", "0", "a"}, {"request"}, {"listen"},
		{"listen", "a", "--echo", "--reply-with", "cat"}, {"ping", "extra"}, {"ping", "--interval", "0s"},
		{"request", "--timeout", "0s", "a"}, {"request", "--server", " , ", "a"},
	} {
		_, stderr, code := runCLI(t, nil, args...)
		if code != exitUsage || !strings.Contains(stderr, "see 'switchboard "+args[0]+" --help'") {
			t.Errorf("%q: exit %d; stderr %q; want 2 and a pointer to --help", args, code, stderr)
		}
	}
}
