package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

func TestHashTokenCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"hash-token"}, &cli{stdin: strings.NewReader("s3cret\n"), stdout: &out, stderr: &errOut, environ: testEnv()})
	if code != exitOK {
		t.Fatalf("exit %d; stderr %s", code, errOut.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret")); err != nil {
		t.Fatalf("printed %q, which does not match the secret: %v", hash, err)
	}
	for _, tt := range []struct {
		name, stdin string
		args        []string
	}{{"empty", "\n", nil}, {"argument", "x", []string{"s3cret"}}} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"hash-token"}, tt.args...), &cli{stdin: strings.NewReader(tt.stdin), stdout: &out, stderr: &errOut, environ: testEnv()})
			if code != exitUsage || out.Len() != 0 {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, out.String())
			}
		})
	}
}

// TestPrintConfigRedactsToken: --print-config shows neither a --token value nor a
// SWITCHBOARD_TOKEN.
func TestPrintConfigRedactsToken(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		args []string
	}{{nil, []string{"--token", "hunter2"}}, {[]string{"SWITCHBOARD_TOKEN=hunter2"}, nil}} {
		stdout, stderr, code := runCLI(t, tt.env, append([]string{"serve", "--print-config"}, tt.args...)...)
		if code != exitOK || strings.Contains(stdout, "hunter2") || !strings.Contains(stdout, "token: <redacted>") {
			t.Fatalf("exit %d; output shows the token or no redaction:\n%s%s", code, stdout, stderr)
		}
	}
}

// jsonAddr returns the addr of a JSON log line.
func jsonAddr(t *testing.T, line string) string {
	t.Helper()
	var rec struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log line %q is not JSON: %v", line, err)
	}
	return rec.Addr
}

// TestServeTokenFileAndCmdline: a node whose token comes from --token-file admits that
// token; one started with --token does not show it on /debug/pprof/cmdline.
func TestServeTokenFileAndCmdline(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json", "--token-file", tokenFile)
	addr := jsonAddr(t, p.waitLine(t, `"msg":"switchboard listening"`))
	rawpeer.Dial(t, addr).Hello("c", "from-file")
	bad := rawpeer.Dial(t, addr)
	bad.Write(codec.AppendHello(nil, 1, codec.Version, "c", "from-fil"))
	bad.ExpectError(codec.CodeUnauthorized)
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr())
	}

	q := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json", "--token", "hunter2")
	admin := jsonAddr(t, q.waitLine(t, `"msg":"admin listening"`))
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + admin + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "hunter2") || !strings.Contains(string(body), "--token\x00<redacted>") {
		t.Fatalf("cmdline %d %q; want the token redacted", resp.StatusCode, body)
	}
	if strings.Contains(q.stderr(), "hunter2") {
		t.Fatalf("the log shows the token:\n%s", q.stderr())
	}
	q.signal(t, syscall.SIGTERM)
	if code := q.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, q.stderr())
	}
}

// TestServeReloadsCredentialsOnSIGHUP: SIGHUP re-reads the credentials file; an open
// connection's next frames are checked against the new permissions.
func TestServeReloadsCredentialsOnSIGHUP(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "credentials.yaml")
	write := func(register string) {
		t.Helper()
		s := "users:\n  svc:\n    token-hash: '" + string(h) + "'\n    register: [" + register + "]\n"
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	p := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json", "--credentials", file)
	addr := jsonAddr(t, p.waitLine(t, `"msg":"switchboard listening"`))
	c := rawpeer.Dial(t, addr)
	c.Hello("svc", "svc:pw")
	c.Write(codec.AppendName(nil, codec.TypeRegister, 1, "b"))
	if f, _ := c.ExpectError(codec.CodeForbidden); f.Corr != 1 {
		t.Fatalf("FORBIDDEN corr %d; want 1", f.Corr)
	}

	write("a, b")
	p.signal(t, syscall.SIGHUP)
	p.waitLine(t, `"msg":"credentials reloaded"`)
	p.waitLine(t, `"msg":"configuration reloaded"`)
	c.Write(codec.AppendName(nil, codec.TypeRegister, 2, "b"))
	if f := c.Expect(codec.TypeOK); f.Corr != 2 {
		t.Fatalf("OK corr %d; want 2", f.Corr)
	}

	// A broken file keeps the running credentials.
	if err := os.WriteFile(file, []byte("users:\n  svc:\n    token-hash: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(t, syscall.SIGHUP)
	p.waitLine(t, "reload failed; keeping the running configuration")
	rawpeer.Dial(t, addr).Hello("svc2", "svc:pw")

	p.signal(t, syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr())
	}
}
