package main

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
)

// readmeSessionMarker precedes the README's shell session.
const readmeSessionMarker = "<!-- shell session: cmd/switchboard/readme_test.go"

// readmeSession returns the lines of the README's shell session: each command (comment
// removed) and its comment.
func readmeSession(t *testing.T) (cmds, comments []string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), readmeSessionMarker)
	if !ok {
		t.Fatalf("README.md has no %q", readmeSessionMarker)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md: the shell session has no fenced block")
	}
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		cmd, comment, _ := strings.Cut(line, "#")
		cmds, comments = append(cmds, strings.TrimSpace(cmd)), append(comments, comment)
	}
	return cmds, comments
}

// sessionArgs turns a README line into the binary's arguments.
func sessionArgs(t *testing.T, line string) (args []string, background bool) {
	t.Helper()
	line, background = strings.CutSuffix(line, "&")
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "bin/switchboard" {
		t.Fatalf("README line %q does not run bin/switchboard", line)
	}
	return f[1:], background
}

// TestReadmeSession runs the README's three-line shell session, as printed, with the
// built binary against a node started by `serve` (SWITCHBOARD_SERVER points the commands
// at it instead of make run's 127.0.0.1:7400): a listener in the background, a request it
// answers, and a request to a name nobody registered.
func TestReadmeSession(t *testing.T) {
	cmds, comments := readmeSession(t)
	if len(cmds) != 3 {
		t.Fatalf("README session has %d lines; want 3: %q", len(cmds), cmds)
	}
	node := startBin(t, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json")
	var rec struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(node.waitLine(t, `"msg":"switchboard listening"`)), &rec); err != nil {
		t.Fatal(err)
	}
	env := []string{envServer + "=" + rec.Addr}

	// 1: the listener, in the background; a reader waits for it as the README says.
	args, bg := sessionArgs(t, cmds[0])
	if !bg {
		t.Fatalf("README line 1 %q: want it in the background (&)", cmds[0])
	}
	listen := startBin(t, env, args...)
	listen.waitLine(t, "listening on svc")

	// 2: a request it answers.
	args, _ = sessionArgs(t, cmds[1])
	stdout, stderr, code := runBin(t, env, args...)
	if code != exitOK || stdout != "hello\n" || !strings.Contains(comments[1], "prints: hello") {
		t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and hello, as the README says (%q)",
			cmds[1], code, stdout, stderr, comments[1])
	}

	// 3: a request to nobody.
	args, _ = sessionArgs(t, cmds[2])
	stdout, stderr, code = runBin(t, env, args...)
	if code != exitNoRoute || stdout != "" || !strings.Contains(stderr, "NO_ROUTE") ||
		!strings.Contains(comments[2], "NO_ROUTE on stderr, exit status 3") {
		t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and NO_ROUTE, as the README says (%q)",
			cmds[2], code, stdout, stderr, exitNoRoute, comments[2])
	}

	listen.signal(t, syscall.SIGINT)
	if code := listen.wait(t); code != exitOK {
		t.Errorf("listen: exit %d after SIGINT; stderr:\n%s", code, listen.stderr())
	}
	node.signal(t, syscall.SIGINT)
	if code := node.wait(t); code != exitOK {
		t.Errorf("serve: exit %d; stderr:\n%s", code, node.stderr())
	}
}
