package main

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"

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
