package cliflag

import (
	"bytes"
	"strings"
	"testing"
)

func newTestSet() *Set {
	s := New("switchboard demo", "switchboard demo [flags]", "Demonstrates the dialect.")
	s.String("addr", "127.0.0.1:7400", "server `address`")
	s.Int("conns", 50, "connections")
	s.Bool("json", false, "print JSON")
	s.Int("stray", 0, "a flag in no section")
	s.Section("Target", "addr")
	s.Section("Load", "conns")
	s.Section("Output", "json")
	s.Env = func(name string) string {
		if name == "addr" {
			return "DEMO_ADDR"
		}
		return ""
	}
	return s
}

func TestParse(t *testing.T) {
	tests := []struct {
		name             string
		args             []string
		code             int
		done             bool
		stdout, stderr   string // substrings
		noStdout, noErrs bool
	}{
		{"ok", []string{"--conns", "3"}, ExitOK, false, "", "", true, true},
		{"help", []string{"--help"}, ExitOK, true, "Usage: switchboard demo [flags]", "", false, true},
		{"short help", []string{"-h"}, ExitOK, true, "Target:\n  --addr address\n", "", false, true},
		{"unknown", []string{"--conn", "3"}, ExitUsage, true, "",
			"switchboard demo: flag provided but not defined: --conn\nsee 'switchboard demo --help'\n", true, false},
		{"bad value", []string{"--conns", "many"}, ExitUsage, true, "", `invalid value "many" for flag --conns`, true, false},
		{"no value", []string{"--addr"}, ExitUsage, true, "", "flag needs an argument: --addr", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code, done := newTestSet().Parse(tt.args, &stdout, &stderr)
			if code != tt.code || done != tt.done {
				t.Errorf("Parse = %d, %v; want %d, %v", code, done, tt.code, tt.done)
			}
			if !strings.Contains(stdout.String(), tt.stdout) || (tt.noStdout && stdout.Len() > 0) {
				t.Errorf("stdout %q; want it to contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) || (tt.noErrs && stderr.Len() > 0) {
				t.Errorf("stderr %q; want it to contain %q", stderr.String(), tt.stderr)
			}
			if strings.Count(stderr.String(), "\n") > 2 {
				t.Errorf("stderr is more than an error and a pointer to --help:\n%s", stderr.String())
			}
		})
	}
}

func TestPrintHelp(t *testing.T) {
	var b bytes.Buffer
	s := newTestSet()
	s.PrintHelp(&b)
	want := `Usage: switchboard demo [flags]

Demonstrates the dialect.

Target:
  --addr address
      server address (default 127.0.0.1:7400; env DEMO_ADDR)

Load:
  --conns int
      connections (default 50)

Output:
  --json
      print JSON

Flags:
  --stray int
      a flag in no section (default 0)
`
	if b.String() != want {
		t.Errorf("help:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := s.Unsectioned(); len(got) != 1 || got[0] != "stray" {
		t.Errorf("Unsectioned = %q; want [stray]", got)
	}
}
