package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/bench"
	"github.com/switchboard/switchboard/internal/config"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, stderr, code := runBin(t, nil, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d; want 0; stderr: %s", args, code, stderr)
		}
		for _, want := range []string{"switchboard " + testVersion + "\n", "commit ", runtime.Version()} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%q: output %q; want it to contain %q", args, stdout, want)
			}
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout bool
		want     string
	}{
		{nil, exitUsage, false, "Commands:"},
		{[]string{"help"}, exitOK, true, "Commands:"},
		{[]string{"-h"}, exitOK, true, "check-config"},
		{[]string{"frobnicate"}, exitUsage, false, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, exitUsage, false, `unknown command "frobnicate"`},
		{[]string{"help", "serve"}, exitOK, true, "--max-connections int"},
		{[]string{"serve", "-h"}, exitOK, true, "env SWITCHBOARD_MAX_CONNECTIONS"},
		{[]string{"version", "extra"}, exitUsage, false, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d; want %d", code, tt.code)
			}
			out := stderr
			if tt.inStdout {
				out = stdout
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q; want it to contain %q (stdout %q)", out, tt.want, stdout)
			}
			if tt.want == "Commands:" {
				for _, cmd := range commands() {
					if !strings.Contains(out, cmd.name) {
						t.Errorf("usage lacks %q", cmd.name)
					}
				}
			}
		})
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckConfig(t *testing.T) {
	creds := func(contents string) string {
		path := filepath.Join(t.TempDir(), "creds.yaml")
		if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
			t.Fatal(err)
		}
		return "credentials: " + path + "\n"
	}
	tests := []struct {
		name  string
		file  string // contents; "" for a file that does not exist
		code  int
		wants []string // in stdout for exit 0, else in stderr
	}{
		{"good", "max-connections: 100\nidle-timeout: 30s\n", exitOK, []string{"sb.yaml: ok"}},
		{"unknown key", "max-conections: 100\n", exitUsage,
			[]string{`sb.yaml:1: max-conections: unknown key (did you mean "max-connections"?)`, "sb.yaml: 1 problem"}},
		{"wrong type", "loops: four\nidle-timeout: 30\n", exitUsage,
			[]string{`sb.yaml:1: loops: want an integer`, "sb.yaml:2: idle-timeout: want a duration", "sb.yaml: 2 problems"}},
		{"invalid", "tick-interval: 5s\n", exitUsage, []string{"tick-interval: must be between 1ms and 1s"}},
		{"missing", "", exitUsage, []string{"no such file"}},
		// A credentials file that is not valid YAML for its layout is one problem, however
		// many lines the YAML decoder's message takes.
		{"credentials unknown key", creds("users:\n  billing:\n    colour: red\n"), exitUsage,
			[]string{"field colour not found", "sb.yaml: 1 problem\n"}},
		{"credentials user twice", creds("users:\n  a:\n    send: [x]\n  a:\n    send: [y]\n"), exitUsage,
			[]string{"already defined", "sb.yaml: 1 problem\n"}},
		{"credentials two bad hashes", creds("users:\n  a:\n    token-hash: plain\n  b:\n    token-hash: plain\n"), exitUsage,
			[]string{"sb.yaml: 2 problems"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sb.yaml")
			if tt.file != "" {
				path = writeConfig(t, tt.file)
			}
			stdout, stderr, code := runCLI(t, nil, "check-config", path)
			if code != tt.code {
				t.Errorf("exit %d; want %d; stderr: %s", code, tt.code, stderr)
			}
			out := stderr
			if tt.code == exitOK {
				out = stdout
			}
			for _, w := range tt.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output %q; want it to contain %q", out, w)
				}
			}
		})
	}
	t.Run("no file", func(t *testing.T) {
		_, stderr, code := runCLI(t, nil, "check-config")
		if code != exitUsage || !strings.Contains(stderr, "want at least one FILE") {
			t.Errorf("exit %d, stderr %q; want 2 and a message", code, stderr)
		}
	})
	t.Run("example", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, nil, "check-config", filepath.Join("testdata", "example.yaml"))
		if code != exitOK || !strings.Contains(stdout, "example.yaml: ok") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0 and ok", code, stdout, stderr)
		}
	})
}

// TestExampleConfig checks that testdata/example.yaml loads, sets every key and holds
// the defaults.
func TestExampleConfig(t *testing.T) {
	l, err := config.LoadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := config.DefaultNode(); l.Config != want {
		t.Errorf("example config = %+v; want the defaults %+v", l.Config, want)
	}
	for key, src := range l.Sources {
		if src != config.SourceFile {
			t.Errorf("example config lacks %q", key)
		}
	}
}

func TestPrintConfig(t *testing.T) {
	file := writeConfig(t, "max-pending: 77\nloops: 2\n")
	tests := []struct {
		name  string
		env   []string
		args  []string
		wants []string // regexps, multi-line mode
	}{
		{"flag", nil, []string{"--max-connections", "5"},
			[]string{`^max-connections: 5 +# flag$`, `^listen: "?:7400"? +# default$`, `^admin: "?127\.0\.0\.1:7401"? +# default$`}},
		{"all sources", []string{"SWITCHBOARD_CONFIG=" + file, "SWITCHBOARD_LOOPS=3", "SWITCHBOARD_TOKEN=hunter2"},
			[]string{"--idle-timeout=2m"},
			[]string{`^max-pending: 77 +# file$`, `^loops: 3 +# env$`, `^idle-timeout: 2m0s +# flag$`,
				`^token: "?<redacted>"? +# env$`, `^# switchboard effective configuration \(config file .*sb\.yaml\)$`}},
		{"config flag", nil, []string{"--config", file},
			[]string{`^max-pending: 77 +# file$`, `^loops: 2 +# file$`}},
		// An explicit 0 survives and says what it means; auto values show what they resolve
		// to; the profile's runtime settings are shown.
		{"zero is off", nil, []string{"--idle-timeout", "0", "--zone-hysteresis", "off"},
			[]string{`^idle-timeout: 0s +# flag \(off\)$`, `^  zone-hysteresis: 0 +# flag \(off\)$|^zone-hysteresis: 0 +# flag \(off\)$`,
				`^loops: 0 +# default \(auto: \d+ = GOMAXPROCS\)$`, `^max-connections: 0 +# default \(auto: `,
				`^max-handshakes: 0 +# default \(auto: \d+ = a tenth of the connection cap \d+, at least 64\)$`,
				`^#   GOGC: 100$`, `^#   GOMEMLIMIT: 180MiB`}},
		{"auto handshakes from the cap", nil, []string{"--max-connections", "1000"},
			[]string{`^max-handshakes: 0 +# default \(auto: 100 = a tenth of the connection cap 1000, at least 64\)$`}},
		// A cluster node runs one loop fewer, and one with JetStream half the profile's GOGC.
		{"cluster node", nil, []string{"--cluster", "embedded", "--cluster-replicas", "1"},
			[]string{`^loops: 0 +# default \(auto: \d+ = GOMAXPROCS \d+ less 1, a cluster node\)$`,
				`^#   GOGC: 50 \(the profile's 100 halved: a cluster node with JetStream\)$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.env, append([]string{"serve", "--print-config"}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d; want 0; stderr: %s", code, stderr)
			}
			for _, w := range tt.wants {
				if !regexp.MustCompile("(?m)" + w).MatchString(stdout) {
					t.Errorf("output lacks a line matching %s:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout, "hunter2") {
				t.Errorf("secret printed:\n%s", stdout)
			}
			// The output is a config file.
			if _, err := config.LoadFile(writeConfig(t, stdout)); err != nil {
				t.Errorf("output does not load: %v", err)
			}
		})
	}
}

func TestServeBadConfig(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		args  []string
		wants []string
	}{
		{"undefined flag", nil, []string{"--max-conections", "5"}, []string{"flag provided but not defined: --max-conections\nsee 'switchboard serve --help'"}},
		{"bad int flag", nil, []string{"--max-connections", "lots"}, []string{`--max-connections: want an integer, got "lots"`}},
		{"bad duration flag", nil, []string{"--idle-timeout", "30"}, []string{`--idle-timeout: want a duration`}},
		{"bad env", []string{"SWITCHBOARD_NODE_ID=70000"}, nil, []string{"SWITCHBOARD_NODE_ID: node-id: 70000 is out of range"}},
		{"invalid", nil, []string{"--max-frame", "10"}, []string{"max-frame: must be between"}},
		{"log level", nil, []string{"--log-level", "loud"}, []string{`log-level: want debug, info, warn or error, got "loud"`}},
		{"log format", nil, []string{"--log-format", "xml"}, []string{`--log-format: want text or json`}},
		{"positional", nil, []string{"now"}, []string{`unexpected argument "now"`}},
		{"missing file", nil, []string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}, []string{"nope.yaml", "no such file"}},
		{"every problem", nil, []string{"--loops", "x", "--tick-interval", "5s", "--log-level", "loud"},
			[]string{"--loops", "tick-interval", "log-level"}},
		{"zero that means nothing", nil, []string{"--tick-interval", "0", "--ring-size", "0"},
			[]string{"tick-interval: must be between 1ms and 1s, got 0s", "ring-size: must be positive, got 0"}},
		{"off where 0 is not off", nil, []string{"--max-frame", "off"}, []string{`--max-frame: want an integer, got "off"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, tt.env, append([]string{"serve", "--print-config"}, tt.args...)...)
			if code != exitUsage {
				t.Errorf("exit %d; want 2; stderr: %s", code, stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q; want it to contain %q", stderr, w)
				}
			}
		})
	}
}

// TestServeHelpSections checks that serve --help goes to stdout and groups every flag
// under a section, in order.
func TestServeHelpSections(t *testing.T) {
	stdout, stderr, code := runBin(t, nil, "serve", "--help")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	last := -1
	for _, sec := range []string{"Configuration:", "Listeners:", "Limits:", "Timeouts:", "Buffers:", "Overload:", "Logging:"} {
		i := strings.Index(stdout, "\n"+sec+"\n")
		if i < 0 || i < last {
			t.Errorf("section %q missing or out of order:\n%s", sec, stdout)
		}
		last = i
	}
	if strings.Contains(stdout, "\nFlags:\n") {
		t.Errorf("some flags are in no section:\n%s", stdout[strings.Index(stdout, "\nFlags:\n"):])
	}
}

// TestHelpDialect checks that every command's --help is in one style: on stdout, exit 0,
// "Usage: switchboard ...", section headers, "  --name type" lines each followed by an
// indented description. bench echo --help is the one that used to differ.
func TestHelpDialect(t *testing.T) {
	flagLine := regexp.MustCompile(`^  --[a-z-]+( [A-Za-z]+)?$`)
	for _, args := range [][]string{{"serve"}, {"bench", "echo"}, {"bench", "overload"}, {"tune", "check"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := runBin(t, nil, append(args, "--help")...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: switchboard "+strings.Join(args, " ")) {
				t.Errorf("help does not start with its usage line:\n%s", stdout)
			}
			lines := strings.Split(stdout, "\n")
			if !strings.Contains(stdout, ":\n  --") {
				t.Errorf("no section header followed by a flag:\n%s", stdout)
			}
			for i, l := range lines {
				if strings.HasPrefix(l, "  -") && (!flagLine.MatchString(l) ||
					i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "      ")) {
					t.Errorf("line %d %q is not a --flag line followed by its description", i+1, l)
				}
			}
		})
	}
	// A bad flag is one line and a pointer to --help, on stderr.
	for _, args := range [][]string{{"serve", "--lisen", "x"}, {"bench", "echo", "--pipelin", "3"}, {"tune", "check", "--conections", "5"}} {
		stdout, stderr, code := runBin(t, nil, args...)
		cmd := "switchboard " + strings.Join(args[:len(args)-2], " ")
		want := fmt.Sprintf("%s: flag provided but not defined: %s\nsee '%s --help'\n", cmd, args[len(args)-2], cmd)
		if code != exitUsage || stdout != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, %q", args, code, stdout, stderr, want)
		}
	}
}

// TestDocListsCommands checks that the package comment names every command, tune
// subcommand and bench scenario.
func TestDocListsCommands(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"switchboard help", "switchboard tune show", "switchboard tune check"}
	for _, cmd := range commands() {
		want = append(want, "switchboard "+cmd.name)
	}
	for _, sc := range []string{bench.ScenarioEcho, bench.ScenarioConnect, bench.ScenarioRoute, bench.ScenarioOverload, bench.ScenarioSoak} {
		want = append(want, "switchboard bench "+sc)
	}
	for _, w := range want {
		if !strings.Contains(string(doc), "//\t"+w+" ") {
			t.Errorf("doc.go does not list %q", w)
		}
	}
}
