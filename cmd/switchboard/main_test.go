package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/leakcheck"
)

// binPath is the switchboard binary built by TestMain.
var binPath string

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "switchboard-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "switchboard")
	args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=" + testVersion}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		err := goleak.Find(leakcheck.GnetPool()...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	return code
}

// testEnv is the test's environment without SWITCHBOARD_* variables, plus extra.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runBin runs the binary to completion and returns its output and exit code.
func runBin(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = testEnv(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("switchboard %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// proc is a running switchboard whose stderr the test reads line by line.
type proc struct {
	cmd   *exec.Cmd
	lines chan string // stderr, closed at EOF
	seen  []string    // lines read so far, for failure messages
}

func startBin(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(binPath, args...), env)
}

// startBinNoFile starts the binary with its open-file limit lowered to nofile.
func startBinNoFile(t *testing.T, nofile int, env []string, args ...string) *proc {
	t.Helper()
	script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile)
	return startCmd(t, exec.Command("sh", append([]string{"-c", script, binPath}, args...)...), env)
}

func startCmd(t *testing.T, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	cmd.Env = testEnv(env...)
	if slices.Contains(cmd.Args, "serve") && !slices.ContainsFunc(cmd.Args, func(a string) bool {
		return strings.HasPrefix(a, "--loop-lag-budget")
	}) {
		// A loaded machine's scheduling delays must not shed the frames of a test of
		// another mechanism (the traffic zone counts loop lag); tests of the zones pass
		// --loop-lag-budget themselves. The environment is overridden by flags.
		cmd.Env = append(cmd.Env, "SWITCHBOARD_LOOP_LAG_BUDGET=1h")
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The buffer outlasts any log these tests produce, so the reader never blocks the
	// child on a full pipe.
	p := &proc{cmd: cmd, lines: make(chan string, 4096)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			for range p.lines {
			}
			_ = cmd.Wait()
		}
	})
	return p
}

// waitLine returns the first stderr line containing substr, failing the test if none
// comes before the deadline or the process exits.
func (p *proc) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("switchboard exited before logging %q; stderr:\n%s", substr, strings.Join(p.seen, "\n"))
			}
			p.seen = append(p.seen, line)
			if strings.Contains(line, substr) {
				return line
			}
		case <-deadline.C:
			t.Fatalf("no %q logged within 20s; stderr:\n%s", substr, strings.Join(p.seen, "\n"))
		}
	}
}

// wait reads the rest of stderr and returns the exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-p.lines:
			if !ok {
				done = true
				break
			}
			p.seen = append(p.seen, line)
		case <-deadline.C:
			t.Fatalf("switchboard did not exit within 30s; stderr:\n%s", strings.Join(p.seen, "\n"))
		}
	}
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) stderr() string { return strings.Join(p.seen, "\n") }
