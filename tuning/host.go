package tuning

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// HostPaths says where ReadHostAt finds the host's settings; DefaultHostPaths is the real
// host. Tests point it at a directory of fake files.
type HostPaths struct {
	Proc   string // "/proc"
	Cgroup string // "/sys/fs/cgroup" (cgroup v2 unified hierarchy)
}

// sysctl is the file under /proc/sys of a sysctl key such as "net.core.somaxconn".
func (paths HostPaths) sysctl(key string) string {
	return filepath.Join(append([]string{paths.Proc, "sys"}, strings.Split(key, ".")...)...)
}

// DefaultHostPaths returns the paths of the running host.
func DefaultHostPaths() HostPaths { return HostPaths{Proc: "/proc", Cgroup: "/sys/fs/cgroup"} }

// ReadHost reads this process's and this host's settings for Check: RLIMIT_NOFILE, the
// sysctls under /proc/sys, MemTotal, the cgroup v2 CPU and memory limits, GOMAXPROCS and
// the CPU count. A value that cannot be read is Unknown. It changes nothing; it starts
// /bin/sh once to learn the soft open-file limit the process started with. Safe for
// concurrent use.
func ReadHost() HostReadings { return ReadHostAt(DefaultHostPaths()) }

// ReadHostAt is ReadHost with the files read under paths. The open-file limit,
// GOMAXPROCS and the CPU count always come from this process.
func ReadHostAt(paths HostPaths) HostReadings {
	r := HostReadings{
		GOMAXPROCS: int64(runtime.GOMAXPROCS(0)),
		NumCPU:     int64(runtime.NumCPU()),
	}
	r.NoFileSoft, r.NoFileHard = noFileLimit()
	sys := paths.sysctl
	r.FileMax = readFirstInt(sys("fs.file-max"))
	r.NrOpen = readFirstInt(sys("fs.nr_open"))
	b := ReadBacklogs(paths)
	r.Somaxconn, r.SynBacklog = b.Somaxconn, b.SynBacklog
	r.TwReuse = readFirstInt(sys("net.ipv4.tcp_tw_reuse"))
	r.PortLow, r.PortHigh = Unknown, Unknown
	if f := readFields(sys("net.ipv4.ip_local_port_range")); len(f) == 2 {
		r.PortLow, r.PortHigh = parseInt(f[0]), parseInt(f[1])
	}
	r.MemTotal = memTotal(filepath.Join(paths.Proc, "meminfo"))
	r.CgroupMemMax, r.CPUQuota = cgroupLimits(paths)
	return r
}

// cgroupLimits returns the process's cgroup memory limit (bytes, Unknown for none) and
// CPU quota (CPUs, 0 for none, Unknown when no cgroup CPU controller is readable). It
// reads cgroup v2 (cpu.max, memory.max) and falls back to v1 (cpu.cfs_quota_us and
// cpu.cfs_period_us, memory.limit_in_bytes), in the process's own cgroup from
// /proc/self/cgroup first and then at the hierarchy's root, which is what a container
// usually sees.
func cgroupLimits(paths HostPaths) (memMax int64, cpus float64) {
	memMax, cpus = Unknown, Unknown
	v2, v1cpu, v1mem := selfCgroups(filepath.Join(paths.Proc, "self", "cgroup"))
	for _, dir := range []string{filepath.Join(paths.Cgroup, v2), paths.Cgroup} {
		if f := readFields(filepath.Join(dir, "cpu.max")); len(f) == 2 && cpus == Unknown {
			cpus = quotaCPUs(f[0], f[1])
		}
		if f := readFields(filepath.Join(dir, "memory.max")); len(f) == 1 && memMax == Unknown && f[0] != "max" {
			memMax = parseInt(f[0])
		}
	}
	for _, dir := range []string{filepath.Join(paths.Cgroup, "cpu", v1cpu), filepath.Join(paths.Cgroup, "cpu")} {
		q, per := readFields(filepath.Join(dir, "cpu.cfs_quota_us")), readFields(filepath.Join(dir, "cpu.cfs_period_us"))
		if len(q) == 1 && len(per) == 1 && cpus == Unknown {
			cpus = quotaCPUs(q[0], per[0])
		}
	}
	for _, dir := range []string{filepath.Join(paths.Cgroup, "memory", v1mem), filepath.Join(paths.Cgroup, "memory")} {
		// v1 reports "no limit" as a huge page-aligned number near MaxInt64.
		if n := readFirstInt(filepath.Join(dir, "memory.limit_in_bytes")); n != Unknown && n < 1<<62 && memMax == Unknown {
			memMax = n
		}
	}
	return memMax, cpus
}

// selfCgroups returns the process's cgroup paths from /proc/self/cgroup: the v2 path
// ("0::/path") and the v1 cpu and memory controllers' paths; "" where absent.
func selfCgroups(path string) (v2, cpu, mem string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "cpu":
				cpu = parts[2]
			case "memory":
				mem = parts[2]
			}
		}
	}
	return v2, cpu, mem
}

// quotaCPUs turns a quota and period (cgroup v2 "max"/number, v1 -1/number) into CPUs:
// 0 for no limit, Unknown when they do not parse.
func quotaCPUs(quota, period string) float64 {
	if quota == "max" || quota == "-1" {
		return 0
	}
	q, p := parseInt(quota), parseInt(period)
	if q <= 0 || p <= 0 {
		return Unknown
	}
	return float64(q) / float64(p)
}

func memTotal(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return Unknown
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb := parseInt(f[0]); kb != Unknown {
					return kb * 1024
				}
			}
		}
	}
	return Unknown
}

func readFields(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

func readFirstInt(path string) int64 {
	f := readFields(path)
	if len(f) == 0 {
		return Unknown
	}
	return parseInt(f[0])
}

func parseInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return Unknown
	}
	return n
}
