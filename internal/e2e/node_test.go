package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/server"
)

// nodeClientDir is the TypeScript client, relative to this package.
const nodeClientDir = "../../clients/node"

// nodeTestsInCI reports whether the CI variable says this is a CI run.
func nodeTestsInCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// nodeAndClient returns node's path and checks that the TypeScript client is built. Without
// them the test is skipped, except in CI, where it fails (make ci runs node-test first).
func nodeAndClient(t *testing.T) string {
	t.Helper()
	const how = "build it with make node-build (or make node-test)"
	node, err := exec.LookPath("node")
	if err != nil {
		if nodeTestsInCI() {
			t.Fatalf("node not found on PATH and CI is set (scripts/ci-deps.sh installs it)")
		}
		t.Skipf("node not found on PATH; skipping the Go↔TypeScript client test")
	}
	if _, err := os.Stat(filepath.Join(nodeClientDir, "dist", "index.js")); err != nil {
		if nodeTestsInCI() {
			t.Fatalf("TypeScript client not built and CI is set: %v; %s", err, how)
		}
		t.Skipf("TypeScript client not built (%v); %s", err, how)
	}
	return node
}

// TestTypeScriptClientInterop has a Go client and the TypeScript client (clients/node)
// serve and call each other through one server: each registers a name and answers
// requests to it, and each sends requests to the other's name.
func TestTypeScriptClientInterop(t *testing.T) {
	node := nodeAndClient(t)
	s := startServer(t, server.Config{Token: "t0ken"})
	addr := s.Addr().String()
	goc := dial(t, []string{addr}, client.Config{
		Name:  "go-client",
		Token: "t0ken",
		OnRequest: func(r *client.Request) {
			_ = r.Reply(append([]byte("go:"), r.Payload...))
		},
	})
	if err := goc.Register(ctx5(t), "go-svc"); err != nil {
		t.Fatal(err)
	}

	const n = 100
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test/interop.mjs", addr, "t0ken", fmt.Sprint(n))
	cmd.Dir = nodeClientDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 8)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok || line != want {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("node printed %q (open %v); want %q\nstderr:\n%s", line, ok, want, stderr.String())
			}
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("no %q from node\nstderr:\n%s", want, stderr.String())
		}
	}

	expect("ready")
	// Go → TypeScript, concurrently with TypeScript → Go.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := goc.Request(ctx5(t), "ts-svc", fmt.Appendf(nil, "p%d", i))
			if err == nil && string(resp) != fmt.Sprintf("ts:p%d", i) {
				err = fmt.Errorf("request %d: got %q", i, resp)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	expect(fmt.Sprintf("requests ok %d", n))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := goc.SendAck(ctx5(t), "ts-svc", []byte("one-way")); err != nil {
		t.Errorf("SendAck to the TypeScript client: %v", err)
	}

	_ = stdin.Close()
	expect("closed")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node: %v\nstderr:\n%s", err, stderr.String())
	}
}
