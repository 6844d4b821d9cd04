package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

func TestLoopbackAddr(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:7401", true}, {"127.1.2.3:0", true}, {"[::1]:7401", true}, {"localhost:7401", true},
		{"[::ffff:127.0.0.1]:1", true},
		{":7401", false}, {"0.0.0.0:7401", false}, {"[::]:7401", false}, {"10.0.0.1:7401", false},
		{"admin.example:7401", false}, {"nonsense", false},
	} {
		if got := loopbackAddr(tt.addr); got != tt.want {
			t.Errorf("loopbackAddr(%q) = %v; want %v", tt.addr, got, tt.want)
		}
	}
}

func writeToken(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAdminAccessFor(t *testing.T) {
	file := writeToken(t, "  file-token\n")
	empty := writeToken(t, "\n")
	for _, tt := range []struct {
		name, admin, file, pprof string
		env                      []string
		token                    string // want
		wantPprof                bool
		err                      string // substring; "" = no error
	}{
		{"loopback, no token", "127.0.0.1:7401", "", "auto", nil, "", true, ""},
		{"loopback, pprof off", "127.0.0.1:7401", "", "off", nil, "", false, ""},
		{"loopback with token", "[::1]:7401", "", "auto", []string{"SWITCHBOARD_ADMIN_TOKEN=env-token"}, "env-token", true, ""},
		{"off loopback, no token", ":7401", "", "auto", nil, "", false, "is not a loopback address"},
		{"off loopback, empty env", "0.0.0.0:7401", "", "auto", []string{"SWITCHBOARD_ADMIN_TOKEN="}, "", false, "is not a loopback address"},
		{"off loopback, file", ":7401", file, "auto", nil, "file-token", false, ""},
		{"off loopback, env, pprof on", ":7401", "", "on", []string{"SWITCHBOARD_ADMIN_TOKEN=env-token"}, "env-token", true, ""},
		{"both", ":7401", file, "auto", []string{"SWITCHBOARD_ADMIN_TOKEN=env-token"}, "", false, "set one"},
		{"empty file", ":7401", empty, "auto", nil, "", false, "is empty"},
		{"missing file", ":7401", filepath.Join(t.TempDir(), "none"), "auto", nil, "", false, "no such file"},
		{"admin off", "off", "", "auto", nil, "", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := config.DefaultNode()
			n.Admin, n.AdminTokenFile, n.AdminPprof = tt.admin, tt.file, tt.pprof
			a, err := adminAccessFor(n, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v; want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(a.token) != tt.token || a.pprof != tt.wantPprof {
				t.Errorf("token %q pprof %v; want %q, %v", a.token, a.pprof, tt.token, tt.wantPprof)
			}
		})
	}
}

// TestAdminGuard checks every endpoint's answer with no, a wrong and the right token,
// and pprof's 404 unless enabled.
func TestAdminGuard(t *testing.T) {
	inner := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/debug/pprof/", "/debug/pprof/heap"} {
		inner.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	}
	const token = "s3cret-admin-token"
	get := func(h http.Handler, path, auth string) int {
		req := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", path)
		}
		return rec.Code
	}
	for _, tt := range []struct {
		name   string
		access adminAccess
		path   string
		auth   string
		want   int
	}{
		{"no token needed", adminAccess{pprof: true}, "/metrics", "", 200},
		{"pprof on", adminAccess{pprof: true}, "/debug/pprof/heap", "", 200},
		{"pprof off", adminAccess{}, "/debug/pprof/", "", 404},
		{"pprof off, subpath", adminAccess{}, "/debug/pprof/heap", "", 404},
		{"pprof off, other endpoints", adminAccess{}, "/healthz", "", 200},
		{"token: none", adminAccess{token: []byte(token)}, "/healthz", "", 401},
		{"token: wrong", adminAccess{token: []byte(token)}, "/metrics", "Bearer nope", 401},
		{"token: prefix", adminAccess{token: []byte(token)}, "/metrics", "Bearer s3cret", 401},
		{"token: not bearer", adminAccess{token: []byte(token)}, "/metrics", "Basic " + token, 401},
		{"token: right", adminAccess{token: []byte(token)}, "/metrics", "Bearer " + token, 200},
		{"token: right, pprof off", adminAccess{token: []byte(token)}, "/debug/pprof/", "Bearer " + token, 404},
		{"token: wrong, pprof off", adminAccess{token: []byte(token)}, "/debug/pprof/", "", 401},
		{"token: right, pprof on", adminAccess{token: []byte(token), pprof: true}, "/debug/pprof/", "Bearer " + token, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := get(tt.access.guard(inner), tt.path, tt.auth); got != tt.want {
				t.Errorf("GET %s (Authorization %q) = %d; want %d", tt.path, tt.auth, got, tt.want)
			}
		})
	}
}

// TestServeAdminOffLoopbackNeedsToken: serve refuses to start (exit 2, a clear message)
// with a non-loopback admin address and no token.
func TestServeAdminOffLoopbackNeedsToken(t *testing.T) {
	for _, admin := range []string{":0", "0.0.0.0:0"} {
		_, stderr, code := runCLI(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", admin)
		if code != exitUsage {
			t.Fatalf("--admin %s: exit %d; want 2; stderr:\n%s", admin, code, stderr)
		}
		if !strings.Contains(stderr, "is not a loopback address") || !strings.Contains(stderr, "admin-token-file") {
			t.Errorf("--admin %s: stderr lacks the reason and the fix:\n%s", admin, stderr)
		}
	}
}

// TestServeAdminToken runs the binary with an admin listener on every interface and a
// token file: requests without or with a wrong token get 401, with the right one 200;
// pprof is off (404) there by default.
func TestServeAdminToken(t *testing.T) {
	const token = "tok-0123456789abcdef"
	file := writeToken(t, token+"\n")
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", ":0", "--admin-token-file", file, "--log-format", "json")
	var rec struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(p.waitLine(t, `"msg":"admin listening"`)), &rec); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(rec.Addr)
	base := "http://127.0.0.1:" + port
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 401}, {"/metrics", "Bearer wrong", 401}, {"/healthz", "Bearer " + token, 200},
		{"/metrics", "Bearer " + token, 200}, {"/debug/pprof/", "Bearer " + token, 404},
	} {
		req, _ := http.NewRequest("GET", base+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s (Authorization %q) = %d; want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
	if strings.Contains(p.stderr(), token) {
		t.Errorf("the token appears in the log:\n%s", p.stderr())
	}
}
