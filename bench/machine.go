package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MachineStats is what the whole machine did over the switchboard pass, from /proc/stat
// read before and after it (connecting phase, load and grace included; not the --floor
// pass), the window of the load generator's CPU figure. On a virtual machine the
// hypervisor may give part of the CPU to other guests of the host ("steal"), which the
// guest's own processes cannot see in their CPU times and which makes runs of one command
// differ by up to 2× on this project's machines. Absent where /proc/stat is not readable.
type MachineStats struct {
	StealPct float64 `json:"steal_pct"` // share of all CPU time the hypervisor stole
	BusyPct  float64 `json:"busy_pct"`  // share of all CPU time spent neither idle nor stolen
}

// cpuTicks are the machine's CPU times, summed over all CPUs, in clock ticks.
type cpuTicks struct {
	steal, idle, total uint64
}

// readCPUTicks reads the aggregate "cpu" line of root/stat (user nice system idle iowait
// irq softirq steal ...; guest times are already in user and nice).
func readCPUTicks(root string) (cpuTicks, bool) {
	f, err := os.Open(filepath.Join(root, "stat"))
	if err != nil {
		return cpuTicks{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(fields[1+i], 10, 64)
			if err != nil {
				return cpuTicks{}, false
			}
			v[i] = n
		}
		var t cpuTicks
		for _, n := range v {
			t.total += n
		}
		t.idle, t.steal = v[3]+v[4], v[7]
		return t, true
	}
	return cpuTicks{}, false
}

// machineStats is the machine's figures between two readings (nil if either failed or
// no time passed).
func machineStats(a, b cpuTicks, ok bool) *MachineStats {
	if !ok || b.total <= a.total || b.steal < a.steal || b.idle < a.idle {
		return nil
	}
	d := float64(b.total - a.total)
	steal, idle := float64(b.steal-a.steal), float64(b.idle-a.idle)
	return &MachineStats{StealPct: 100 * steal / d, BusyPct: 100 * max(0, d-steal-idle) / d}
}
