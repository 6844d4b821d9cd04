package tuning

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/limits"
)

// goodHost is a production host prepared for 100K+ connections.
func goodHost() HostReadings {
	return HostReadings{
		NoFileSoft: 1 << 20, NoFileHard: 1 << 20, FileMax: 1 << 22, NrOpen: 1 << 20,
		Somaxconn: 65535, SynBacklog: 65535, PortLow: 1024, PortHigh: 65535, TwReuse: 1,
		MemTotal: 8 << 30, CgroupMemMax: Unknown, GOMAXPROCS: 4, NumCPU: 4, CPUQuota: 0,
	}
}

// devVM is the development VM: 20,000 open files that cannot be raised, 24 GiB, 2 CPUs.
func devVM() HostReadings {
	return HostReadings{
		NoFileSoft: 20000, NoFileHard: 20000, FileMax: 2466170, NrOpen: 1048576,
		Somaxconn: 4096, SynBacklog: 2048, PortLow: 32768, PortHigh: 60999, TwReuse: 2,
		MemTotal: 24684084 << 10, CgroupMemMax: Unknown, GOMAXPROCS: 2, NumCPU: 2, CPUQuota: Unknown,
	}
}

func find(t *testing.T, fs []Finding, check string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no %q finding in %+v", check, fs)
	return Finding{}
}

func TestNoFileNeeded(t *testing.T) {
	for _, target := range []int{1, 100, 15_000, 19_672, 19_673, 100_000, 1_000_000} {
		n := NoFileNeeded(target)
		if got, _ := limits.MaxConnections(0, uint64(n)); got < target {
			t.Errorf("NoFileNeeded(%d) = %d allows only %d connections", target, n, got)
		}
		if got, _ := limits.MaxConnections(0, uint64(n-1)); got >= target {
			t.Errorf("NoFileNeeded(%d) = %d is not the smallest: %d allows %d", target, n, n-1, got)
		}
	}
	if got := NoFileNeeded(100_000); got != 101_139 {
		t.Errorf("NoFileNeeded(100000) = %d; want 101139", got)
	}
	if got := RecommendedNoFile(100_000); got != 1<<20 {
		t.Errorf("RecommendedNoFile(100000) = %d; want 1048576", got)
	}
	if got := RecommendedNoFile(2_000_000); got != NoFileNeeded(2_000_000) {
		t.Errorf("RecommendedNoFile(2000000) = %d; want NoFileNeeded's %d", got, NoFileNeeded(2_000_000))
	}
}

func TestCheckOpenFiles(t *testing.T) {
	small, _ := Lookup("small")
	tests := []struct {
		name   string
		target int
		host   func(*HostReadings)
		want   Severity
		wantIn []string // substrings of Read+Need+Change
	}{
		{"dev VM 100K", 100_000, nil, Fail, []string{"hard 20000", "at most 19672 connections", ">= 101139", "LimitNOFILE=1048576", "6 server processes"}},
		{"dev VM 15K", 15_000, nil, OK, []string{"hard 20000"}},
		{"dev VM at the ceiling", 19_672, nil, OK, nil},
		{"dev VM one past the ceiling", 19_673, nil, Fail, []string{"2 server processes"}},
		{"soft below hard", 15_000, func(r *HostReadings) { r.NoFileSoft = 1024 }, OK, []string{"soft 1024, hard", "Go runtime raises the soft limit 1024"}},
		{"soft unknown", 15_000, func(r *HostReadings) { r.NoFileSoft = Unknown }, OK, []string{"soft unknown, hard"}},
		{"unknown", 15_000, func(r *HostReadings) { r.NoFileSoft, r.NoFileHard = Unknown, Unknown }, Warn, []string{"could not be read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := devVM()
			if tt.host != nil {
				tt.host(&r)
			}
			f := find(t, small.Check(tt.target, r), "open-files")
			if f.Severity != tt.want {
				t.Errorf("severity %v; want %v (%+v)", f.Severity, tt.want, f)
			}
			text := f.Read + "\n" + f.Need + "\n" + f.Change
			for _, w := range tt.wantIn {
				if !strings.Contains(text, w) {
					t.Errorf("finding lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestCheckGoodHostPasses(t *testing.T) {
	for _, p := range Profiles() {
		fs := p.Check(100_000, goodHost())
		if w := Worst(fs); w != OK {
			t.Errorf("%s: worst %v on a prepared host; findings %+v", p.Name, w, fs)
		}
		if want := []string{"open-files", "nr-open", "file-max", "somaxconn", "syn-backlog", "port-range", "tw-reuse", "memory", "gomaxprocs"}; len(fs) != len(want) {
			t.Fatalf("%d findings; want %d", len(fs), len(want))
		} else {
			for i := range want {
				if fs[i].Check != want[i] {
					t.Errorf("finding %d is %q; want %q", i, fs[i].Check, want[i])
				}
			}
		}
	}
	p, _ := Lookup("small")
	if s := SysctlSnippet(100_000, p.Check(100_000, goodHost())); !strings.Contains(s, "nothing to change") {
		t.Errorf("SysctlSnippet on a prepared host:\n%s", s)
	}
}

func TestCheckSettings(t *testing.T) {
	small, _ := Lookup("small")
	tests := []struct {
		name   string
		target int
		host   func(*HostReadings)
		check  string
		want   Severity
		wantIn string
	}{
		{"nr_open too low", 100_000, func(r *HostReadings) { r.NrOpen = 65536 }, "nr-open", Fail, "fs.nr_open=1048576"},
		{"nr_open unknown", 100_000, func(r *HostReadings) { r.NrOpen = Unknown }, "nr-open", Warn, "could not be read"},
		{"file-max too low", 100_000, func(r *HostReadings) { r.FileMax = 50_000 }, "file-max", Fail, "fs.file-max="},
		{"file-max tight", 100_000, func(r *HostReadings) { r.FileMax = 120_000 }, "file-max", Warn, "fs.file-max="},
		{"somaxconn low", 100_000, func(r *HostReadings) { r.Somaxconn = 4096 }, "somaxconn", Warn, "net.core.somaxconn=65535"},
		{"somaxconn low for 15K too", 15_000, func(r *HostReadings) { r.Somaxconn = 4096 }, "somaxconn", Warn, "flood of silent connections"},
		{"somaxconn enough", 15_000, func(r *HostReadings) { r.Somaxconn = 65535 }, "somaxconn", OK, ""},
		{"syn backlog low for 15K too", 15_000, func(r *HostReadings) { r.SynBacklog = 4096 }, "syn-backlog", Warn, "tcp_max_syn_backlog=65535"},
		{"syn backlog low", 100_000, func(r *HostReadings) { r.SynBacklog = 2048 }, "syn-backlog", Warn, "tcp_max_syn_backlog=65535"},
		{"ports short", 100_000, func(r *HostReadings) { r.PortLow, r.PortHigh = 32768, 60999 }, "port-range", Warn, "use 4 or more source addresses"},
		{"ports enough", 15_000, func(r *HostReadings) { r.PortLow, r.PortHigh = 32768, 60999 }, "port-range", OK, ""},
		{"tw_reuse off", 100_000, func(r *HostReadings) { r.TwReuse = 0 }, "tw-reuse", Warn, "tcp_tw_reuse=1"},
		{"tw_reuse loopback", 100_000, func(r *HostReadings) { r.TwReuse = 2 }, "tw-reuse", OK, "loopback only"},
		{"memory short", 100_000, func(r *HostReadings) { r.MemTotal = 500 * MiB }, "memory", Fail, "MemTotal 500MiB"},
		{"memory tight", 100_000, func(r *HostReadings) { r.MemTotal = 600 * MiB }, "memory", Warn, "80%"},
		{"cgroup memory limit", 100_000, func(r *HostReadings) { r.CgroupMemMax = 128 * MiB }, "memory", Fail, "cgroup memory limit 128MiB"},
		{"memory per process", 100_000, func(r *HostReadings) { r.NoFileHard = 20000; r.MemTotal = 512 * MiB }, "memory", Fail, "6 node(s) of at most 19672 connections × 150MiB (profile small) + 391MiB kernel socket memory (~4 KiB per idle connection, outside RSS) = 1291MiB"},
		{"quota below procs", 100_000, func(r *HostReadings) { r.GOMAXPROCS, r.CPUQuota = 4, 1.5 }, "gomaxprocs", Warn, "GOMAXPROCS=2"},
		{"quota fits", 100_000, func(r *HostReadings) { r.GOMAXPROCS, r.CPUQuota = 2, 1.5 }, "gomaxprocs", OK, "quota 1.50 CPUs"},
		{"no quota", 100_000, nil, "gomaxprocs", OK, "no cgroup CPU limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodHost()
			if tt.host != nil {
				tt.host(&r)
			}
			fs := small.Check(tt.target, r)
			f := find(t, fs, tt.check)
			if f.Severity != tt.want {
				t.Errorf("severity %v; want %v (%+v)", f.Severity, tt.want, f)
			}
			if text := f.Read + "\n" + f.Need + "\n" + f.Change; !strings.Contains(text, tt.wantIn) {
				t.Errorf("finding lacks %q:\n%s", tt.wantIn, text)
			}
			checkSnippetAgrees(t, tt.target, fs)
		})
	}
}

// sysctlOf is the sysctl each check judges.
var sysctlOf = map[string]string{
	"nr-open": "fs.nr_open", "file-max": "fs.file-max", "somaxconn": "net.core.somaxconn",
	"syn-backlog": "net.ipv4.tcp_max_syn_backlog", "port-range": "net.ipv4.ip_local_port_range",
	"tw-reuse": "net.ipv4.tcp_tw_reuse",
}

// checkSnippetAgrees checks that the snippet proposes a sysctl exactly when its finding is
// not OK.
func checkSnippetAgrees(t *testing.T, target int, fs []Finding) {
	t.Helper()
	s := SysctlSnippet(target, fs)
	for _, f := range fs {
		key := sysctlOf[f.Check]
		if key == "" {
			continue
		}
		proposed := strings.Contains(s, "\n"+key+" = ")
		if proposed != (f.Severity != OK) {
			t.Errorf("%s is %v but the snippet proposes it: %v\n%s", f.Check, f.Severity, proposed, s)
		}
	}
}

func TestSysctlSnippet(t *testing.T) {
	small, _ := Lookup("small")
	fs := small.Check(100_000, devVM())
	s := SysctlSnippet(100_000, fs)
	checkSnippetAgrees(t, 100_000, fs)
	for _, want := range []string{"net.core.somaxconn = 65535", "net.ipv4.tcp_max_syn_backlog = 65535",
		`net.ipv4.ip_local_port_range = 1024 65535`} {
		if !strings.Contains(s, want) {
			t.Errorf("snippet lacks %q:\n%s", want, s)
		}
	}
	// tcp_tw_reuse = 2 (loopback only) is judged OK, so it is not proposed either.
	for _, unwanted := range []string{"fs.nr_open", "fs.file-max", "tcp_tw_reuse"} {
		if strings.Contains(s, unwanted) {
			t.Errorf("snippet sets %s, which the host already has (or is judged OK):\n%s", unwanted, s)
		}
	}
	// Every setting line follows a comment line.
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "#") && (i == 0 || !strings.HasPrefix(lines[i-1], "#")) {
			t.Errorf("line %d %q has no comment above it", i+1, l)
		}
	}
	if h := SystemdHint(100_000); !strings.Contains(h, "LimitNOFILE=1048576") {
		t.Errorf("SystemdHint:\n%s", h)
	}
}

func TestWorstAndSeverity(t *testing.T) {
	if Worst(nil) != OK || Worst([]Finding{{Severity: Warn}, {Severity: OK}}) != Warn ||
		Worst([]Finding{{Severity: Fail}, {Severity: Warn}}) != Fail {
		t.Error("Worst does not return the highest severity")
	}
	for s, want := range map[Severity]string{OK: "ok", Warn: "warn", Fail: "fail", 9: "Severity(9)"} {
		if s.String() != want {
			t.Errorf("Severity(%d).String() = %q; want %q", s, s.String(), want)
		}
	}
}
