package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// runCLI runs a command in this process through run, the entry point main calls, and
// returns its output and exit code, so that coverage sees the command's code. It is for
// commands that return by themselves (help, version, check-config, tune, serve
// --print-config). Serving and signal tests exec the built binary (startBin), and
// TestVersion execs it to prove the link-time version and main's exit code.
func runCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &cli{stdout: &out, stderr: &errOut, environ: testEnv(env...)})
	return out.String(), errOut.String(), code
}

// TestVersionInProcess: without link-time values the version comes from the build
// information.
func TestVersionInProcess(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"help", "version"}} {
		stdout, stderr, code := runCLI(t, nil, args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d; want 0; stderr: %s", args, code, stderr)
		}
		if args[0] == "help" {
			continue
		}
		for _, want := range []string{"switchboard ", "commit ", runtime.Version()} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%q: output %q; want it to contain %q", args, stdout, want)
			}
		}
	}
}
