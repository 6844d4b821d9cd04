package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/switchboard/switchboard/tuning"
)

func TestTuneShow(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string // substrings of stdout (stderr when code != 0)
	}{
		{"list", []string{"tune", "show"}, exitOK, []string{"balanced (default)", "small", "throughput", "latency", "150MiB", "GOMEMLIMIT"}},
		{"small", []string{"tune", "show", "small"}, exitOK, []string{
			"profile small: built for 100000 connections in 150MiB per node", "Many mostly idle connections",
			"GOGC        25", "GOMEMLIMIT  140MiB  (146800640 bytes)", "GOMAXPROCS  not set",
			"read-buffer-cap", "16384", "(default 65536)", "write-buffer-cap", "4096", "accept-rate", "2000",
			"idle-timeout", "2m0s", "max-pending-bytes"}},
		{"balanced", []string{"tune", "show", "balanced"}, exitOK, []string{"GOGC        100", "180MiB", "none: every server setting keeps its built-in default"}},
		{"latency", []string{"tune", "show", "latency"}, exitOK, []string{"frames-per-wake", "(default 512)", "tick-interval", "10ms", "tcp-delay: not set"}},
		{"throughput", []string{"tune", "show", "throughput"}, exitOK, []string{"frames-per-wake", "4096", "262144"}},
		{"unknown", []string{"tune", "show", "huge"}, exitUsage, []string{`unknown profile "huge"`, "balanced, small, throughput, latency"}},
		{"two names", []string{"tune", "show", "small", "latency"}, exitUsage, []string{"at most one profile name"}},
		{"no subcommand", []string{"tune"}, exitUsage, []string{"switchboard tune show [NAME]"}},
		{"bad subcommand", []string{"tune", "fix"}, exitUsage, []string{`unknown subcommand "fix"`}},
		{"help", []string{"help", "tune"}, exitOK, []string{"tune check [--connections N]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d; want %d; stdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			out := stdout
			if code != exitOK {
				out = stderr
			}
			for _, w := range tt.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// findingLine returns the severity printed for a check, e.g. "FAIL" for open-files.
func findingLine(t *testing.T, out, check string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^(OK|WARN|FAIL) +` + regexp.QuoteMeta(check) + `$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s finding in:\n%s", check, out)
	}
	return m[1]
}

// TestTuneCheckThisHost runs tune check against the real host. Its expectations are
// computed from the same readings, so it holds on any host; on the development VM
// (20,000 open files, not raisable) 100K connections fail and 15K pass the fd check.
func TestTuneCheckThisHost(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	host := tuning.ReadHost()
	for _, target := range []int{100_000, 15_000} {
		t.Run(fmt.Sprint(target), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, "tune", "check", "--connections", fmt.Sprint(target))
			p, _ := tuning.Lookup(tuning.Default)
			findings := p.Check(target, host)
			wantCode := exitOK
			if tuning.Worst(findings) == tuning.Fail {
				wantCode = exitFailure
			}
			if code != wantCode {
				t.Errorf("exit %d; want %d; stderr: %s\n%s", code, wantCode, stderr, stdout)
			}
			fd := findingLine(t, stdout, "open-files")
			wantFd := "OK"
			if int64(rl.Max) < tuning.NoFileNeeded(target) {
				wantFd = "FAIL"
			}
			if fd != wantFd {
				t.Errorf("open-files %s; want %s with hard limit %d:\n%s", fd, wantFd, rl.Max, stdout)
			}
			for _, w := range []string{fmt.Sprintf("hard %d", rl.Max), "sysctl settings:", "LimitNOFILE=", "RESULT:"} {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			if wantFd == "FAIL" && !strings.Contains(stdout, "cannot reach") {
				t.Errorf("a failing check does not say the host cannot reach the target:\n%s", stdout)
			}
		})
	}
}

func TestTuneCheckOnDevVM(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max != 20000 {
		t.Skipf("not the 20,000-open-file development VM (hard limit %d)", rl.Max)
	}
	stdout, _, code := runCLI(t, nil, "tune", "check", "--connections", "100000")
	if code != exitFailure {
		t.Errorf("exit %d; want %d", code, exitFailure)
	}
	for _, w := range []string{"RLIMIT_NOFILE soft 20000, hard 20000: one process can hold at most 19672 connections",
		"RLIMIT_NOFILE >= 101139", "6 server processes", "1 check failed (open-files)"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	stdout, _, code = runCLI(t, nil, "tune", "check", "--connections", "15000", "--profile", "small")
	if code != exitOK || findingLine(t, stdout, "open-files") != "OK" {
		t.Errorf("15000 connections: exit %d, open-files %s; want 0, OK:\n%s", code, findingLine(t, stdout, "open-files"), stdout)
	}
}

func TestTuneCheckArgs(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string // in stdout when code is 0 or 1, else stderr
	}{
		{"profile from env", []string{"SWITCHBOARD_PROFILE=small"}, []string{"--connections", "1000"}, exitOK, "profile small (150MiB per node"},
		{"flag beats env", []string{"SWITCHBOARD_PROFILE=small"}, []string{"--connections", "1000", "--profile", "latency"}, exitOK, "profile latency"},
		{"default target", nil, []string{"--profile", "throughput"}, -1, "50000 connections, profile throughput"},
		{"negative", nil, []string{"--connections", "-5"}, exitUsage, "--connections must be positive"},
		{"not a number", nil, []string{"--connections", "lots"}, exitUsage, "invalid value"},
		{"unknown profile", nil, []string{"--profile", "huge"}, exitUsage, `unknown profile "huge"`},
		{"positional", nil, []string{"now"}, exitUsage, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.env, append([]string{"tune", "check"}, tt.args...)...)
			out := stdout
			if tt.code == exitUsage {
				out = stderr
			}
			if tt.code >= 0 && code != tt.code {
				t.Errorf("exit %d; want %d; stdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// TestServeAppliesProfile checks that serve applies the profile's runtime settings, that
// an explicit GOGC variable wins, and that the profile's server settings are in effect.
func TestServeAppliesProfile(t *testing.T) {
	p := startBin(t, []string{"GOGC=80"}, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--profile", "small")
	line := p.waitLine(t, "tuning profile applied")
	for _, w := range []string{"profile=small", "gogc=80", "gogc_source=env", "gomemlimit=146800640", "gomemlimit_source=profile", "gomaxprocs_source=runtime"} {
		if !strings.Contains(line, w) {
			t.Errorf("tuning profile applied line %q lacks %q", line, w)
		}
	}
	eff := p.waitLine(t, "effective configuration")
	for _, w := range []string{"profile=small", "read-buffer-cap=16384", "read-buffer-cap=profile"} {
		if !strings.Contains(eff, w) {
			t.Errorf("effective configuration line lacks %q:\n%s", w, eff)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d; want 0; stderr:\n%s", code, p.stderr())
	}
}

// TestTuneShowWidth checks that every line of tune show fits 100 columns.
func TestTuneShowWidth(t *testing.T) {
	for _, name := range append([]string{""}, tuning.Names()...) {
		t.Run("profile="+name, func(t *testing.T) {
			args := []string{"tune", "show"}
			if name != "" {
				args = append(args, name)
			}
			stdout, stderr, code := runBin(t, nil, args...)
			if code != exitOK {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			for i, line := range strings.Split(stdout, "\n") {
				if n := utf8.RuneCountInString(line); n > 100 {
					t.Errorf("line %d is %d columns; want at most 100:\n%s", i+1, n, line)
				}
			}
		})
	}
}

// TestTuneCheckJSON checks that --json prints one JSON report whose findings and exit
// status agree with the text report's.
func TestTuneCheckJSON(t *testing.T) {
	for _, target := range []int{1000, 100_000} {
		t.Run(fmt.Sprint(target), func(t *testing.T) {
			stdout, stderr, code := runBin(t, nil, "tune", "check", "--json", "--connections", fmt.Sprint(target))
			var rep struct {
				Target   int    `json:"target"`
				Profile  string `json:"profile"`
				Result   string `json:"result"`
				Host     map[string]float64
				Findings []struct {
					Check, Severity, Read, Need, Change, Sysctl, Value string
				}
				Sysctl, Systemd string
			}
			dec := json.NewDecoder(strings.NewReader(stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rep); err != nil {
				t.Fatalf("stdout is not the JSON report: %v\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			if dec.More() {
				t.Errorf("more than one JSON value on stdout:\n%s", stdout)
			}
			if rep.Target != target || rep.Profile != tuning.Default || len(rep.Findings) != 9 {
				t.Errorf("target %d, profile %q, %d findings; want %d, %q, 9", rep.Target, rep.Profile, len(rep.Findings), target, tuning.Default)
			}
			if _, ok := rep.Host["nofile_hard"]; !ok {
				t.Errorf("host readings lack nofile_hard: %v", rep.Host)
			}
			worst, wantCode := "ok", exitOK
			for _, f := range rep.Findings {
				switch {
				case f.Severity == "fail":
					worst, wantCode = "fail", exitFailure
				case f.Severity == "warn" && worst == "ok":
					worst = "warn"
				}
			}
			if rep.Result != worst || code != wantCode {
				t.Errorf("result %q, exit %d; want %q, %d", rep.Result, code, worst, wantCode)
			}
			if !strings.Contains(rep.Sysctl, "sysctl.d") || !strings.Contains(rep.Systemd, "LimitNOFILE=") {
				t.Errorf("snippets missing: %q %q", rep.Sysctl, rep.Systemd)
			}
		})
	}
}

// TestTuneCheckSoftLimitAtStart runs tune check under `ulimit -Sn 1024`: the Go runtime
// raises the process's own soft limit, yet the report must show the 1024 it started with.
func TestTuneCheckSoftLimitAtStart(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max <= 1024 {
		t.Skipf("hard open-file limit %d leaves no room below it", rl.Max)
	}
	cmd := exec.Command("/bin/sh", "-c", `ulimit -Sn 1024 && exec "$0" tune check --connections 1000`, binPath)
	cmd.Env = testEnv()
	out, _ := cmd.Output()
	if want := fmt.Sprintf("RLIMIT_NOFILE soft 1024, hard %d", rl.Max); !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
