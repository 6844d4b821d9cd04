package tuning

import (
	"fmt"
	"math"
	"strings"

	"github.com/switchboard/switchboard/limits"
)

// KernelBytesPerConn is the kernel memory an idle TCP connection costs, outside the
// process's RSS and GOMEMLIMIT: about 3.9 KB per loopback socket measured on the
// development VM, rounded up. Busy sockets hold their buffers on top.
const KernelBytesPerConn = 4 * KiB

// Unknown marks a reading that could not be taken (file absent, not Linux).
const Unknown = -1

// HostReadings are the host facts Check judges. ReadHost takes them from this process,
// /proc and /sys; tests build them by hand. Every field is Unknown when it could not be
// read.
type HostReadings struct {
	// NoFileSoft is the soft RLIMIT_NOFILE this process was started with, before the Go
	// runtime raised it to the hard limit (every Go program since Go 1.19 does, switchboard
	// serve included); NoFileHard is the hard limit, which is therefore what counts.
	NoFileSoft int64 `json:"nofile_soft"`
	NoFileHard int64 `json:"nofile_hard"`
	// FileMax is fs.file-max (open files, system-wide); NrOpen is fs.nr_open (the highest
	// RLIMIT_NOFILE a process may be given).
	FileMax int64 `json:"file_max"`
	NrOpen  int64 `json:"nr_open"`
	// Somaxconn is net.core.somaxconn, the cap on a listener's accept backlog.
	Somaxconn int64 `json:"somaxconn"`
	// SynBacklog is net.ipv4.tcp_max_syn_backlog.
	SynBacklog int64 `json:"syn_backlog"`
	// PortLow and PortHigh are net.ipv4.ip_local_port_range: the ephemeral ports a client
	// uses, per source address and destination.
	PortLow  int64 `json:"port_low"`
	PortHigh int64 `json:"port_high"`
	// TwReuse is net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only.
	TwReuse int64 `json:"tw_reuse"`
	// MemTotal is /proc/meminfo's MemTotal, bytes; CgroupMemMax is the cgroup memory
	// limit (v2 memory.max or v1 memory.limit_in_bytes), bytes, Unknown for none.
	MemTotal     int64 `json:"mem_total"`
	CgroupMemMax int64 `json:"cgroup_mem_max"`
	// GOMAXPROCS is the value the server would run with; NumCPU the CPUs the process may
	// use; CPUQuota the cgroup CPU quota in CPUs (v2 cpu.max or v1 cpu.cfs_quota_us over
	// cpu.cfs_period_us; 0 when unlimited, Unknown when unreadable).
	GOMAXPROCS int64   `json:"gomaxprocs"`
	NumCPU     int64   `json:"num_cpu"`
	CPUQuota   float64 `json:"cpu_quota"`
}

// Severity grades a Finding.
type Severity uint8

// Severities, in increasing order.
const (
	OK Severity = iota
	Warn
	Fail
)

// MarshalText writes the severity as its String, for JSON reports.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Severity(%d)", uint8(s))
}

// Finding is the verdict on one host setting. Its JSON form is part of `tune check
// --json`'s report.
type Finding struct {
	Check    string   `json:"check"`            // short name: open-files, somaxconn, ...
	Severity Severity `json:"severity"`         // Fail means the host cannot reach the target as it is
	Read     string   `json:"read"`             // what was read
	Need     string   `json:"need"`             // what the target needs
	Change   string   `json:"change,omitempty"` // what to change; "" when nothing needs to change
	// Sysctl and Value, when Sysctl is set, are the sysctl setting that clears this
	// finding; SysctlSnippet writes them. Only findings that are not OK carry one.
	Sysctl string `json:"sysctl,omitempty"`
	Value  string `json:"value,omitempty"`
}

// propose records on f the sysctl that fixes it.
func (f *Finding) propose(key, value string) {
	f.Sysctl, f.Value = key, value
}

// NoFileNeeded returns the smallest RLIMIT_NOFILE with which one server process can hold
// target connections: the connections plus limits.FDReserve.
func NoFileNeeded(target int) int64 {
	if target <= 0 {
		return 0
	}
	// n - FDReserve(n) >= target with FDReserve(n) = 128 + n/100: start just below and step.
	n := uint64(float64(target+128) / 0.99)
	for n > 0 {
		if got, _ := limits.MaxConnections(0, n-1); got < target {
			break
		}
		n--
	}
	for {
		if got, _ := limits.MaxConnections(0, n); got >= target {
			return int64(n)
		}
		n++
	}
}

// RecommendedNoFile is the LimitNOFILE to configure for target connections: the
// deploy/ unit's 1048576, or more if the target needs it.
func RecommendedNoFile(target int) int64 { return max(1<<20, NoFileNeeded(target)) }

// Recommended sysctl values beyond what NoFileNeeded implies.
const (
	recSomaxconn  = 65535
	recSynBacklog = 65535
	recPortLow    = 1024
	recPortHigh   = 65535
	recPorts      = recPortHigh - recPortLow + 1
)

// Check judges whether this host can hold target connections on nodes running profile p,
// one Finding per setting, in a fixed order: open-files, nr-open, file-max, somaxconn,
// syn-backlog, port-range, tw-reuse, memory, gomaxprocs. A Fail means the target cannot be
// reached as the host is; a Warn means it can, but something will hurt (slow reconnects,
// CPU throttling, a load generator short of ports). Pure: safe for concurrent use.
func (p Profile) Check(target int, r HostReadings) []Finding {
	var fs []Finding
	need := NoFileNeeded(target)
	rec := RecommendedNoFile(target)

	// Open files per process.
	perProc := 0
	f := Finding{Check: "open-files", Need: fmt.Sprintf("RLIMIT_NOFILE >= %d for %d connections in one process (%d descriptors reserved)",
		need, target, need-int64(target))}
	if r.NoFileHard == Unknown {
		f.Severity, f.Read = Warn, "RLIMIT_NOFILE could not be read"
		f.Change = fmt.Sprintf("check `ulimit -Hn`; set LimitNOFILE=%d in the systemd unit", rec)
	} else {
		perProc, _ = limits.MaxConnections(0, uint64(max(r.NoFileHard, 0)))
		soft := "unknown"
		if r.NoFileSoft != Unknown {
			soft = fmt.Sprint(r.NoFileSoft)
		}
		f.Read = fmt.Sprintf("RLIMIT_NOFILE soft %s, hard %d: one process can hold at most %d connections",
			soft, r.NoFileHard, perProc)
		switch {
		case r.NoFileHard < need:
			procs := 0
			if perProc > 0 {
				procs = ceilDiv(target, perProc)
			}
			f.Severity = Fail
			f.Change = fmt.Sprintf("raise the hard open-file limit to %d or more: LimitNOFILE=%d in the systemd unit "+
				"(or `ulimit -n`, /etc/security/limits.conf; raising a hard limit needs CAP_SYS_RESOURCE). "+
				"Where it cannot be raised (containers, sandboxes), %d connections need %d server processes "+
				"(a cluster, or SO_REUSEPORT siblings) of at most %d connections each",
				need, rec, target, procs, perProc)
		case r.NoFileSoft != Unknown && r.NoFileSoft < need:
			f.Severity = OK
			f.Read += fmt.Sprintf(" (the Go runtime raises the soft limit %d to the hard limit at start; "+
				"other programs, and switchboard's children, keep %d)", r.NoFileSoft, r.NoFileSoft)
		}
	}
	fs = append(fs, f)

	// fs.nr_open caps any process's hard limit.
	f = Finding{Check: "nr-open", Read: readInt("fs.nr_open", r.NrOpen),
		Need: fmt.Sprintf("fs.nr_open >= %d (no process's open-file limit can exceed it)", need)}
	switch {
	case r.NrOpen == Unknown:
		f.Severity = Warn
		f.propose("fs.nr_open", fmt.Sprint(max(need, rec)))
	case r.NrOpen < need:
		f.Severity, f.Change = Fail, fmt.Sprintf("sysctl -w fs.nr_open=%d", max(need, rec))
		f.propose("fs.nr_open", fmt.Sprint(max(need, rec)))
	}
	fs = append(fs, f)

	// fs.file-max: all processes together, with room for the rest of the system.
	wantFileMax := need + 65536
	f = Finding{Check: "file-max", Read: readInt("fs.file-max", r.FileMax),
		Need: fmt.Sprintf("fs.file-max >= %d (the node's descriptors plus 65536 for the rest of the host)", wantFileMax)}
	switch {
	case r.FileMax == Unknown:
		f.Severity = Warn
		f.propose("fs.file-max", fmt.Sprint(max(wantFileMax, 2*rec)))
	case r.FileMax < need:
		f.Severity, f.Change = Fail, fmt.Sprintf("sysctl -w fs.file-max=%d", max(wantFileMax, 2*rec))
		f.propose("fs.file-max", fmt.Sprint(max(wantFileMax, 2*rec)))
	case r.FileMax < wantFileMax:
		f.Severity, f.Change = Warn, fmt.Sprintf("sysctl -w fs.file-max=%d", max(wantFileMax, 2*rec))
		f.propose("fs.file-max", fmt.Sprint(max(wantFileMax, 2*rec)))
	}
	fs = append(fs, f)

	// Accept and SYN backlogs, whatever the target: reconnect storms after a restart or a
	// drain, and floods of silent connections. With tcp-defer-accept the kernel holds
	// those, up to the backlog; past it, SYN cookies let them in to the node, where they
	// turn over through the handshake cap and real clients queue behind them. A flood of
	// 5,000 cost the connected clients 2.3x their p99 with the kernel's 4,096, 1.4x with
	// 65,535 (docs/BENCHMARKS.md, "Handshake flood: the attacker on its own CPU" and
	// "closes in chunks").
	wb := int64(recSomaxconn)
	f = Finding{Check: "somaxconn", Read: readInt("net.core.somaxconn", r.Somaxconn),
		Need: fmt.Sprintf("net.core.somaxconn >= %d so that a reconnect storm of %d clients is queued, not dropped, and a flood of silent connections waits in the kernel, not on the node (Go's listen backlog is somaxconn)", wb, target)}
	if r.Somaxconn == Unknown || r.Somaxconn < wb {
		f.Severity, f.Change = Warn, fmt.Sprintf("sysctl -w net.core.somaxconn=%d", wb)
		f.propose("net.core.somaxconn", fmt.Sprint(wb))
	}
	fs = append(fs, f)
	ws := int64(recSynBacklog)
	f = Finding{Check: "syn-backlog", Read: readInt("net.ipv4.tcp_max_syn_backlog", r.SynBacklog),
		Need: fmt.Sprintf("net.ipv4.tcp_max_syn_backlog >= %d (half-open connections during a reconnect storm, and silent ones held back by tcp-defer-accept; past it SYN cookies let them in)", ws)}
	if r.SynBacklog == Unknown || r.SynBacklog < ws {
		f.Severity, f.Change = Warn, fmt.Sprintf("sysctl -w net.ipv4.tcp_max_syn_backlog=%d", ws)
		f.propose("net.ipv4.tcp_max_syn_backlog", fmt.Sprint(ws))
	}
	fs = append(fs, f)

	// Ephemeral ports: a client-side limit, per (source address, server address).
	f = Finding{Check: "port-range", Need: fmt.Sprintf("%d ephemeral ports per source address for a load generator opening %d connections to one server address", target, target)}
	if r.PortLow == Unknown || r.PortHigh == Unknown {
		f.Severity, f.Read = Warn, "net.ipv4.ip_local_port_range could not be read"
		f.propose("net.ipv4.ip_local_port_range", fmt.Sprintf("%d %d", recPortLow, recPortHigh))
	} else {
		ports := r.PortHigh - r.PortLow + 1
		addrs := ceilDiv(target, int(max(ports, 1)))
		f.Read = fmt.Sprintf("net.ipv4.ip_local_port_range = %d %d (%d ports)", r.PortLow, r.PortHigh, ports)
		switch {
		case ports >= int64(target):
		case ports < recPorts:
			f.Severity = Warn
			f.Change = fmt.Sprintf("clients and load generators on this host: use %d or more source addresses "+
				"(127.0.0.x on loopback, several IPs or server addresses otherwise), or widen the range: "+
				"sysctl -w net.ipv4.ip_local_port_range=\"%d %d\" (%d ports). The server itself uses no ephemeral ports",
				addrs, recPortLow, recPortHigh, recPorts)
			f.propose("net.ipv4.ip_local_port_range", fmt.Sprintf("%d %d", recPortLow, recPortHigh))
		default:
			// The range is as wide as it sensibly gets: nothing to change here, but a
			// single source address still cannot open the target.
			f.Read += fmt.Sprintf("; a load generator needs %d or more source addresses for %d connections to one server address", addrs, target)
		}
	}
	fs = append(fs, f)

	f = Finding{Check: "tw-reuse", Read: readInt("net.ipv4.tcp_tw_reuse", r.TwReuse),
		Need: "net.ipv4.tcp_tw_reuse = 1 on hosts whose clients reconnect in bulk (TIME_WAIT ports reused for new outgoing connections)"}
	switch r.TwReuse {
	case 1:
	case 2:
		f.Read += " (loopback only: enough for tests on one host)"
	default:
		f.Severity, f.Change = Warn, "sysctl -w net.ipv4.tcp_tw_reuse=1 on client and load-generator hosts"
		f.propose("net.ipv4.tcp_tw_reuse", "1")
	}
	fs = append(fs, f)

	fs = append(fs, p.checkMemory(target, perProc, r))
	fs = append(fs, checkProcs(r))
	return fs
}

// checkMemory compares the memory the target needs (the profile's budget per node, with
// as many nodes as the open-file limit and the profile's design capacity require) with
// the host's memory, or its cgroup limit when lower.
func (p Profile) checkMemory(target, perProc int, r HostReadings) Finding {
	perNode := p.Connections
	if perNode <= 0 {
		perNode = target
	}
	if perProc > 0 {
		perNode = min(perNode, perProc)
	}
	nodes := max(1, ceilDiv(target, max(perNode, 1)))
	kernel := int64(target) * KernelBytesPerConn
	needBytes := int64(nodes)*p.MemoryBudget + kernel
	f := Finding{Check: "memory",
		Need: fmt.Sprintf("%d node(s) of at most %d connections × %s (profile %s) + %s kernel socket memory (~4 KiB per idle connection, outside RSS) = %s",
			nodes, perNode, FormatBytes(p.MemoryBudget), p.Name, FormatBytes(roundMiB(kernel)), FormatBytes(roundMiB(needBytes)))}
	avail, what := r.MemTotal, "MemTotal"
	if r.CgroupMemMax != Unknown && r.CgroupMemMax > 0 && (avail == Unknown || r.CgroupMemMax < avail) {
		avail, what = r.CgroupMemMax, "cgroup memory limit"
	}
	if avail == Unknown {
		f.Severity, f.Read = Warn, "MemTotal could not be read"
		return f
	}
	f.Read = fmt.Sprintf("%s %s", what, FormatBytes(roundMiB(avail)))
	switch {
	case avail < needBytes:
		f.Severity = Fail
		f.Change = "add memory, spread the connections over more hosts, or choose a profile with a smaller budget (small)"
	case float64(needBytes) > 0.8*float64(avail):
		f.Severity = Warn
		f.Change = "the nodes and their sockets would use over 80% of memory: leave headroom for bursts (busy sockets take more kernel memory than idle ones)"
	}
	return f
}

// checkProcs compares GOMAXPROCS with the cgroup CPU quota: more threads than the quota
// allows are throttled by the CFS scheduler in bursts, which shows up as latency spikes.
func checkProcs(r HostReadings) Finding {
	f := Finding{Check: "gomaxprocs", Need: "GOMAXPROCS <= the cgroup CPU quota, rounded up"}
	switch {
	case r.GOMAXPROCS == Unknown:
		f.Severity, f.Read = Warn, "GOMAXPROCS unknown"
		return f
	case r.CPUQuota == Unknown:
		f.Read = fmt.Sprintf("GOMAXPROCS %d, %d CPUs, no cgroup CPU controller readable (no CPU limit assumed)", r.GOMAXPROCS, r.NumCPU)
		return f
	case r.CPUQuota == 0:
		f.Read = fmt.Sprintf("GOMAXPROCS %d, %d CPUs, no cgroup CPU limit", r.GOMAXPROCS, r.NumCPU)
		return f
	}
	quota := int64(math.Ceil(r.CPUQuota))
	f.Read = fmt.Sprintf("GOMAXPROCS %d, %d CPUs, cgroup CPU quota %.2f CPUs", r.GOMAXPROCS, r.NumCPU, r.CPUQuota)
	if r.GOMAXPROCS > quota {
		f.Severity = Warn
		f.Change = fmt.Sprintf("unset GOMAXPROCS (Go 1.25+ follows the cgroup limit by itself) or set GOMAXPROCS=%d; "+
			"check GODEBUG for containermaxprocs=0", quota)
	}
	return f
}

// Worst returns the highest severity among fs; OK for none.
func Worst(fs []Finding) Severity {
	w := OK
	for _, f := range fs {
		w = max(w, f.Severity)
	}
	return w
}

// sysctlComments explain each setting Check may propose, for SysctlSnippet.
var sysctlComments = map[string]string{
	"fs.nr_open":                   "highest open-file limit a process may get (LimitNOFILE cannot exceed it)",
	"fs.file-max":                  "open files, all processes together",
	"net.core.somaxconn":           "accept backlog: a reconnect storm waits in the queue instead of being dropped",
	"net.ipv4.tcp_max_syn_backlog": "half-open connections during a reconnect storm",
	"net.ipv4.ip_local_port_range": "clients and load generators on this host: more ephemeral ports per source address",
	"net.ipv4.tcp_tw_reuse":        "clients reconnecting in bulk may reuse ports in TIME_WAIT for outgoing connections",
}

// SysctlSnippet returns a sysctl.d file for target connections holding the sysctls that
// Check's findings fs propose, one comment per line; it says so when nothing is needed.
// It is made from the findings, so that a setting Check judged OK is never proposed.
func SysctlSnippet(target int, fs []Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# /etc/sysctl.d/90-switchboard.conf for %d connections; apply with: sysctl --system\n", target)
	n := 0
	for _, f := range fs {
		if f.Sysctl == "" || f.Severity == OK {
			continue
		}
		fmt.Fprintf(&b, "# %s\n%s = %s\n", sysctlComments[f.Sysctl], f.Sysctl, f.Value)
		n++
	}
	if n == 0 {
		b.WriteString("# nothing to change: this host's settings already suffice\n")
	}
	return b.String()
}

// SystemdHint returns the systemd unit lines that give a node the open-file limit target
// connections need.
func SystemdHint(target int) string {
	return fmt.Sprintf("[Service]\n# %d connections need RLIMIT_NOFILE >= %d\nLimitNOFILE=%d\n",
		target, NoFileNeeded(target), RecommendedNoFile(target))
}

func readInt(name string, v int64) string {
	if v == Unknown {
		return name + " could not be read"
	}
	return fmt.Sprintf("%s = %d", name, v)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// roundMiB rounds n up to a whole MiB, for display.
func roundMiB(n int64) int64 { return (n + MiB - 1) / MiB * MiB }
