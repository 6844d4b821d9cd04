package bench

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Before a run the bench checks that the local ports it needs are there: each
// connection takes one ephemeral port for its (source address, target) pair, and a
// TIME_WAIT socket left by an earlier run holds its port for that pair for 60 s unless
// the kernel may reuse it (net.ipv4.tcp_tw_reuse: 1 always, 2 for loopback only, the
// default). The check reads /proc (Linux); elsewhere it reports nothing.

// PortCheck is what the pre-run port check found. Zero values mean "not known".
type PortCheck struct {
	RangeLo int `json:"ephemeral_lo"` // net.ipv4.ip_local_port_range
	RangeHi int `json:"ephemeral_hi"`
	// TWReuse is net.ipv4.tcp_tw_reuse (-1: unknown).
	TWReuse int `json:"tcp_tw_reuse"`
	// TimeWait counts TIME_WAIT sockets from this run's source addresses to its targets.
	TimeWait int `json:"time_wait_to_targets"`
	// Warnings name each (source, target) pair whose connections and TIME_WAIT sockets
	// do not fit in the ephemeral range.
	Warnings []string `json:"warnings,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Ports returns the number of ports in the ephemeral range.
func (c *PortCheck) Ports() int {
	if c.RangeHi < c.RangeLo || c.RangeLo == 0 {
		return 0
	}
	return c.RangeHi - c.RangeLo + 1
}

// tcpTimeWait is TCP_TIME_WAIT in the st column of /proc/net/tcp.
const tcpTimeWait = 6

// parsePortRange parses ip_local_port_range ("32768\t60999\n").
func parsePortRange(s string) (lo, hi int, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("bench: ip_local_port_range %q: want two numbers", s)
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	if err != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("bench: ip_local_port_range %q: not a port range", s)
	}
	return lo, hi, nil
}

// parseProcAddr parses one address of /proc/net/tcp{,6}: the IP as the kernel's 32-bit
// words printed in hex in host byte order, a colon, the port in hex ("0100007F:1F90").
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bench: bad /proc/net/tcp address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bench: bad /proc/net/tcp port %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bench: bad /proc/net/tcp address %q", s)
	}
	// Each 32-bit word was printed as a host-order integer; on the little-endian hosts
	// Go runs Linux on (and this file is read only on the host that wrote it) the bytes
	// of each word come out reversed.
	for i := 0; i < len(raw); i += 4 {
		w := binary.LittleEndian.Uint32(raw[i:])
		binary.BigEndian.PutUint32(raw[i:], w)
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// twPair is one (local IP, remote address) pair of TIME_WAIT sockets.
type twPair struct {
	local  netip.Addr
	remote netip.AddrPort
}

// parseTimeWait counts the TIME_WAIT sockets in a /proc/net/tcp{,6} file by pair.
// Malformed lines are skipped; the header is.
func parseTimeWait(r io.Reader, into map[twPair]int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	for sc.Scan() {
		// "  sl  local_address rem_address   st ..."
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || st != tcpTimeWait {
			continue
		}
		l, err1 := parseProcAddr(f[1])
		rem, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		into[twPair{l.Addr(), rem}]++
	}
	return sc.Err()
}

// pairNeed is how many connections a run opens from one source address to one target.
type pairNeed struct {
	source string // "" for the system's choice
	target string // as given in --addr
	n      int
}

// planPairs returns the connections cfg opens per (source, target) pair, in the order of
// the parts and targets. It mirrors runner.pass (part i owns a contiguous range from
// partSource(i)) and part.open (connection g goes to Addrs[g % len]).
func planPairs(cfg Config) []pairNeed {
	k, n := cfg.Procs, cfg.Conns
	var out []pairNeed
	for i := range k {
		first, last := i*n/k, (i+1)*n/k
		for t, addr := range cfg.Addrs {
			// Indices g in [first, last) with g % len == t.
			m := len(cfg.Addrs)
			cnt := countMod(last, m, t) - countMod(first, m, t)
			if cnt > 0 {
				out = append(out, pairNeed{source: partSource(i, k), target: addr, n: cnt})
			}
		}
	}
	return out
}

// countMod is the number of g in [0, x) with g % m == t.
func countMod(x, m, t int) int {
	if x <= t {
		return 0
	}
	return (x-t-1)/m + 1
}

// partSource is the source address of part i of k: none in process, 127.0.0.(i+2) with
// several worker processes.
func partSource(i, k int) string {
	if k > 1 {
		return fmt.Sprintf("127.0.0.%d", i+2)
	}
	return ""
}

// checkPorts judges the plan against the port range and the TIME_WAIT sockets tw.
func checkPorts(c *PortCheck, plan []pairNeed, tw map[twPair]int) {
	ports := c.Ports()
	for _, p := range plan {
		target, err := resolveTarget(p.target)
		held := 0
		if err == nil {
			for pair, n := range tw {
				if pair.remote == target && (p.source == "" || pair.local.String() == p.source) {
					held += n
				}
			}
		}
		c.TimeWait += held
		if ports == 0 {
			continue
		}
		reusable := c.TWReuse == 1 || (c.TWReuse == 2 && target.Addr().IsLoopback())
		src := p.source
		if src == "" {
			src = "any source"
		}
		switch {
		case p.n > ports:
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s → %s: %d connections > %d ephemeral ports (%d-%d): "+
				"the rest will fail with EADDRNOTAVAIL; use more --procs (source addresses) or targets",
				src, p.target, p.n, ports, c.RangeLo, c.RangeHi))
		case held > 0 && !reusable && p.n+held > ports:
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s → %s: %d connections + %d TIME_WAIT sockets > %d ephemeral ports "+
				"and tcp_tw_reuse %d does not let connect reuse them: wait 60 s for them to expire",
				src, p.target, p.n, held, ports, c.TWReuse))
		}
	}
}

// resolveTarget turns an --addr into the address /proc/net/tcp shows.
func resolveTarget(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// portCheck runs the check for cfg against the files under procRoot ("/proc").
func portCheck(cfg Config, procRoot string) *PortCheck {
	c := &PortCheck{TWReuse: -1}
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/net/ipv4/ip_local_port_range"))
	if err == nil {
		c.RangeLo, c.RangeHi, err = parsePortRange(string(b))
	}
	if err != nil {
		c.Error = err.Error()
		return c
	}
	if b, err := os.ReadFile(filepath.Join(procRoot, "sys/net/ipv4/tcp_tw_reuse")); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			c.TWReuse = v
		}
	}
	tw := map[twPair]int{}
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		f, err := os.Open(filepath.Join(procRoot, name))
		if err != nil {
			continue
		}
		err = parseTimeWait(f, tw)
		_ = f.Close()
		if err != nil {
			c.Error = err.Error()
		}
	}
	checkPorts(c, planPairs(cfg), tw)
	sort.Strings(c.Warnings)
	return c
}

// write prints the check as the lines before a run.
func (c *PortCheck) write(w io.Writer, label string) {
	if c.Error != "" {
		fmt.Fprintf(w, "%s: port check: %s\n", label, c.Error)
		return
	}
	reuse := "unknown"
	switch c.TWReuse {
	case 0:
		reuse = "0: TIME_WAIT ports are not reused"
	case 1:
		reuse = "1: connect reuses TIME_WAIT ports older than 1 s"
	case 2:
		reuse = "2: connect reuses loopback TIME_WAIT ports older than 1 s"
	}
	fmt.Fprintf(w, "%s: ephemeral ports %d-%d (%d per source address and target); tcp_tw_reuse %s; "+
		"%d TIME_WAIT sockets toward the targets\n", label, c.RangeLo, c.RangeHi, c.Ports(), reuse, c.TimeWait)
	for _, m := range c.Warnings {
		fmt.Fprintf(w, "%s: WARNING: %s\n", label, m)
	}
}
