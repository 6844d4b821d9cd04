package tuning

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadHostAt(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"proc/sys/fs/file-max":                  "2466170\n",
		"proc/sys/fs/nr_open":                   "1048576\n",
		"proc/sys/net/core/somaxconn":           "4096\n",
		"proc/sys/net/ipv4/tcp_max_syn_backlog": "2048\n",
		"proc/sys/net/ipv4/ip_local_port_range": "32768\t60999\n",
		"proc/sys/net/ipv4/tcp_tw_reuse":        "2\n",
		"proc/meminfo":                          "MemFree:  1 kB\nMemTotal:       24684084 kB\n",
		"cgroup/cpu.max":                        "150000 100000\n",
		"cgroup/memory.max":                     "268435456\n",
	})
	r := ReadHostAt(HostPaths{Proc: filepath.Join(dir, "proc"), Cgroup: filepath.Join(dir, "cgroup")})
	want := HostReadings{
		NoFileSoft: r.NoFileSoft, NoFileHard: r.NoFileHard,
		FileMax: 2466170, NrOpen: 1048576, Somaxconn: 4096, SynBacklog: 2048,
		PortLow: 32768, PortHigh: 60999, TwReuse: 2, MemTotal: 24684084 * 1024, CgroupMemMax: 256 << 20,
		GOMAXPROCS: int64(runtime.GOMAXPROCS(0)), NumCPU: int64(runtime.NumCPU()), CPUQuota: 1.5,
	}
	if r != want {
		t.Errorf("ReadHostAt = %+v; want %+v", r, want)
	}
	if r.NoFileHard <= 0 || r.NoFileSoft <= 0 || r.NoFileSoft > r.NoFileHard {
		t.Errorf("RLIMIT_NOFILE soft %d, hard %d; want 0 < soft <= hard", r.NoFileSoft, r.NoFileHard)
	}
}

func TestReadHostAtMissingAndUnlimited(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"cgroup/cpu.max":      "max 100000\n",
		"cgroup/memory.max":   "max\n",
		"proc/meminfo":        "garbage\n",
		"proc/sys/fs/nr_open": "lots\n",
	})
	r := ReadHostAt(HostPaths{Proc: filepath.Join(dir, "proc"), Cgroup: filepath.Join(dir, "cgroup")})
	for name, v := range map[string]int64{"FileMax": r.FileMax, "NrOpen": r.NrOpen, "Somaxconn": r.Somaxconn,
		"SynBacklog": r.SynBacklog, "PortLow": r.PortLow, "PortHigh": r.PortHigh, "TwReuse": r.TwReuse,
		"MemTotal": r.MemTotal, "CgroupMemMax": r.CgroupMemMax} {
		if v != Unknown {
			t.Errorf("%s = %d; want Unknown", name, v)
		}
	}
	if r.CPUQuota != 0 {
		t.Errorf("CPUQuota = %v for cpu.max \"max\"; want 0 (no limit)", r.CPUQuota)
	}
	// Check copes with a host where nothing could be read.
	p, _ := Lookup(Default)
	if w := Worst(p.Check(1000, r)); w != Warn {
		t.Errorf("worst finding on an unreadable host = %v; want warn", w)
	}
}

func TestCgroupLimits(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantMem  int64
		wantCPUs float64
	}{
		{"none", nil, Unknown, Unknown},
		{"v2 own cgroup", map[string]string{
			"proc/self/cgroup":         "0::/svc/sb\n",
			"cgroup/svc/sb/cpu.max":    "200000 100000\n",
			"cgroup/svc/sb/memory.max": "1073741824\n",
			"cgroup/cpu.max":           "max 100000\n",
		}, 1 << 30, 2},
		{"v2 root unlimited", map[string]string{
			"proc/self/cgroup":  "0::/\n",
			"cgroup/cpu.max":    "max 100000\n",
			"cgroup/memory.max": "max\n",
		}, Unknown, 0},
		{"v1", map[string]string{
			"proc/self/cgroup":                        "4:memory:/box\n2:cpu,cpuacct:/box\n0::/\n",
			"cgroup/cpu/box/cpu.cfs_quota_us":         "50000\n",
			"cgroup/cpu/box/cpu.cfs_period_us":        "100000\n",
			"cgroup/memory/box/memory.limit_in_bytes": "536870912\n",
		}, 512 << 20, 0.5},
		{"v1 root unlimited (this VM)", map[string]string{
			"proc/self/cgroup":                    "4:memory:/process_api/x\n1:cpu:/\n0::/\n",
			"cgroup/cpu/cpu.cfs_quota_us":         "-1\n",
			"cgroup/cpu/cpu.cfs_period_us":        "100000\n",
			"cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, Unknown, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			mem, cpus := cgroupLimits(HostPaths{Proc: filepath.Join(dir, "proc"), Cgroup: filepath.Join(dir, "cgroup")})
			if mem != tt.wantMem || cpus != tt.wantCPUs {
				t.Errorf("cgroupLimits = %d, %v; want %d, %v", mem, cpus, tt.wantMem, tt.wantCPUs)
			}
		})
	}
}

func TestReadHostThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/sys/fs/nr_open"); err != nil {
		t.Skip("no /proc here")
	}
	r := ReadHost()
	if r.NrOpen == Unknown || r.Somaxconn == Unknown || r.MemTotal == Unknown || r.PortLow == Unknown {
		t.Errorf("ReadHost on Linux left readable settings unknown: %+v", r)
	}
}
