package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--loops", "2")
			p.waitLine(t, "switchboard listening")
			eff := p.waitLine(t, "effective configuration")
			for _, want := range []string{"loops=2", "admin=off", "not_default=", "listen=127.0.0.1:0"} {
				if !strings.Contains(eff, want) {
					t.Errorf("effective configuration line %q lacks %q", eff, want)
				}
			}
			p.signal(t, sig)
			if code := p.wait(t); code != 0 {
				t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
			}
			if !strings.Contains(p.stderr(), "shutdown complete") {
				t.Errorf("no shutdown complete in stderr:\n%s", p.stderr())
			}
		})
	}
}

// TestServeAdmin checks /healthz on the admin listener and that the client listener
// accepts, using JSON logs to learn both addresses.
func TestServeAdmin(t *testing.T) {
	p := startBin(t, []string{"SWITCHBOARD_LISTEN=127.0.0.1:0"}, "serve", "--admin", "127.0.0.1:0", "--log-format", "json")
	addrOf := func(line string) string {
		t.Helper()
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		return rec.Addr
	}
	client := addrOf(p.waitLine(t, `"msg":"switchboard listening"`))
	admin := addrOf(p.waitLine(t, `"msg":"admin listening"`))

	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	for _, tt := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/metrics", "switchboard_connections_max 19"},
		{"/metrics", "process_resident_memory_bytes"},
		{"/zone", `"zone": "GREEN"`},
		{"/capacity", `"connections"`},
		{"/debug/pprof/", "goroutine"},
	} {
		if code, body := get(tt.path); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d, body lacks %q:\n%.400s", tt.path, code, tt.want, body)
		}
	}
	hc.CloseIdleConnections()

	c, err := net.DialTimeout("tcp", client, 10*time.Second)
	if err != nil {
		t.Fatalf("dial client listener: %v", err)
	}
	c.Close()

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
	if strings.Contains(p.stderr(), "reachable from other hosts") {
		t.Errorf("loopback admin address warned about:\n%s", p.stderr())
	}
}

// TestServeAdminWarnsOffLoopback checks the warning for an admin address on every
// interface, which needs a token.
func TestServeAdminWarnsOffLoopback(t *testing.T) {
	p := startBin(t, []string{"SWITCHBOARD_ADMIN_TOKEN=0123456789abcdef"}, "serve", "--listen", "127.0.0.1:0", "--admin", ":0")
	p.waitLine(t, "reachable from other hosts")
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
}

func TestServeAdminListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", ln.Addr().String())
	if code := p.wait(t); code != exitFailure {
		t.Errorf("exit %d; want 1; stderr:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "admin endpoints failed to start") {
		t.Errorf("stderr lacks the admin failure:\n%s", p.stderr())
	}
}
