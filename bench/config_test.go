package bench

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp checks bench's side of the CLI dialect: --help on stdout with exit 0, only
// the flags a scenario uses, grouped by section, and the scenario's own defaults.
func TestHelp(t *testing.T) {
	all, specific := map[string]bool{}, map[string]bool{}
	for _, fl := range scenarioFlags {
		for _, f := range fl {
			specific[f] = true
		}
	}
	for _, sec := range flagSections {
		for _, f := range sec.flags {
			all[f] = true
		}
	}
	for _, sc := range scenarios {
		t.Run(sc, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := mainWith([]string{sc, "--help"}, &stdout, &stderr, inProcess()); code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr.String())
			}
			out := stdout.String()
			if !strings.HasPrefix(out, "Usage: switchboard bench "+sc+" [flags]\n") {
				t.Errorf("help does not start with the usage line:\n%s", out)
			}
			for _, sec := range []string{"\nTarget:\n", "\nLoad:\n", "\nOutput:\n", "\nProcesses:\n"} {
				if !strings.Contains(out, sec) {
					t.Errorf("help lacks section %q:\n%s", sec, out)
				}
			}
			if strings.Contains(out, "\nFlags:\n") {
				t.Errorf("some flags are in no section:\n%s", out)
			}
			uses := map[string]bool{}
			for _, f := range scenarioFlags[sc] {
				uses[f] = true
			}
			cfg := Config{Scenario: sc}
			fs, _ := cfg.flags()
			for f := range all {
				listed := strings.Contains(out, "  --"+f+" ") || strings.Contains(out, "  --"+f+"\n")
				if want := !specific[f] || uses[f]; listed != want || (fs.Lookup(f) != nil) != want {
					t.Errorf("--%s listed %v, defined %v; want %v", f, listed, fs.Lookup(f) != nil, want)
				}
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := mainWith([]string{"connect", "--help"}, &stdout, &stderr, inProcess()); code != 0 ||
		!strings.Contains(stdout.String(), "connections (default 1000)") {
		t.Errorf("connect's --conns does not show connect's default 1000:\n%s", stdout.String())
	}
	// Soak is always open loop (EnsureDefaults makes --rate 0 its default); route's
	// --grace is also every REQUEST's timeout.
	for _, tt := range []struct{ sc, want, not string }{
		{"soak", "soak is always open loop", "0: closed loop"},
		{"echo", "0: closed loop", "REQUEST"},
		{"route", "also every REQUEST's timeout", ""},
	} {
		stdout.Reset()
		mainWith([]string{tt.sc, "--help"}, &stdout, &stderr, inProcess())
		if out := stdout.String(); !strings.Contains(out, tt.want) || (tt.not != "" && strings.Contains(out, tt.not)) {
			t.Errorf("%s --help: want %q, not %q:\n%s", tt.sc, tt.want, tt.not, out)
		}
	}
}

// TestBadFlags checks that a usage error is a short message on stderr and exit 2, not a
// dump of every flag.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"echo", "--pipelin", "3"}, "switchboard bench echo: flag provided but not defined: --pipelin\nsee 'switchboard bench echo --help'\n"},
		{[]string{"connect", "--pipeline", "3"}, "flag provided but not defined: --pipeline"},
		{[]string{"echo", "--reconnect"}, "flag provided but not defined: --reconnect"},
		{[]string{"echo", "--conns", "many"}, `invalid value "many" for flag --conns`},
		{[]string{"echo", "extra"}, "unexpected arguments: extra"},
		{[]string{"ehco"}, `unknown scenario "ehco"`},
		{nil, "Usage: switchboard bench SCENARIO"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := mainWith(tt.args, &stdout, &stderr, inProcess())
			if code != 2 || stdout.Len() > 0 {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q; want it to contain %q", stderr.String(), tt.want)
			}
			if len(tt.args) > 0 && strings.Count(stderr.String(), "\n") > 2 {
				t.Errorf("stderr is more than an error and a pointer to --help:\n%s", stderr.String())
			}
		})
	}
}
