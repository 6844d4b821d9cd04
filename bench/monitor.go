package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverSample is one reading of the server process.
type serverSample struct {
	RSS uint64  // bytes
	CPU float64 // seconds of user+system time since the process started
}

// sampler reads the server's RSS and CPU time.
type sampler interface {
	sample(ctx context.Context) (serverSample, error)
	source() string
}

// procSampler reads /proc/PID (Linux).
type procSampler struct {
	pid  int
	root string // "/proc"; tests point it elsewhere
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func (s procSampler) source() string { return fmt.Sprintf("proc:%d", s.pid) }

func (s procSampler) sample(context.Context) (serverSample, error) {
	dir := fmt.Sprintf("%s/%d", s.root, s.pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return serverSample{}, err
	}
	rss, err := parseVMRSS(status)
	if err != nil {
		return serverSample{}, err
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return serverSample{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return serverSample{}, err
	}
	return serverSample{RSS: rss, CPU: cpu}, nil
}

// parseVMRSS returns the VmRSS line of /proc/PID/status in bytes.
func parseVMRSS(status []byte) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: odd VmRSS line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: odd VmRSS line %q: %w", line, err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("bench: no VmRSS in status (a zombie process?)")
}

// parseStatCPU returns utime+stime from /proc/PID/stat in seconds. The command name
// (field 2) may contain spaces and parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: malformed /proc stat: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// adminSampler scrapes the Prometheus text at http://ADDR/metrics.
type adminSampler struct {
	url    string
	client *http.Client
}

func newAdminSampler(addr string) adminSampler {
	return adminSampler{url: "http://" + addr + "/metrics", client: &http.Client{Timeout: 2 * time.Second}}
}

func (s adminSampler) source() string { return "admin:" + s.url }

func (s adminSampler) sample(ctx context.Context) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return serverSample{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return serverSample{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("bench: %s: %s", s.url, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20))
}

// parseMetrics finds process_resident_memory_bytes and process_cpu_seconds_total in
// Prometheus text exposition format.
func parseMetrics(r io.Reader) (serverSample, error) {
	var s serverSample
	var haveRSS, haveCPU bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if j := strings.IndexByte(name, '{'); j >= 0 {
			// Labels may contain spaces: re-cut after the closing brace.
			k := strings.IndexByte(line, '}')
			if k < 0 {
				continue
			}
			name, rest = name[:j], line[k+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return s, fmt.Errorf("bench: %s: %w", name, err)
			}
			s.RSS, haveRSS = uint64(v), true
		case "process_cpu_seconds_total":
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return s, fmt.Errorf("bench: %s: %w", name, err)
			}
			s.CPU, haveCPU = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if !haveRSS || !haveCPU {
		return s, errors.New("bench: metrics lack process_resident_memory_bytes or process_cpu_seconds_total")
	}
	return s, nil
}

// monitor samples the server every 250 ms while a run lasts and keeps the first, the
// peak and the latest reading. Its methods are safe for concurrent use.
type monitor struct {
	src sampler

	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex // guards the fields below
	first, last serverSample
	haveFirst   bool
	peak        uint64
	err         error
}

const monitorEvery = 250 * time.Millisecond

// startMonitor starts sampling; src nil gives a monitor that reports nothing.
func startMonitor(ctx context.Context, src sampler) *monitor {
	m := &monitor{src: src, done: make(chan struct{})}
	if src == nil {
		close(m.done)
		m.cancel = func() {}
		return m
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.sampleNow(ctx)
	go func() {
		defer close(m.done)
		t := time.NewTicker(monitorEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.sampleNow(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return m
}

// sampleNow takes one reading and returns it (ok false when it failed).
func (m *monitor) sampleNow(ctx context.Context) (serverSample, bool) {
	if m.src == nil {
		return serverSample{}, false
	}
	s, err := m.src.sample(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.err == nil {
			m.err = err
		}
		return s, false
	}
	if !m.haveFirst {
		m.first, m.haveFirst = s, true
	}
	m.last = s
	m.peak = max(m.peak, s.RSS)
	return s, true
}

// stop ends sampling and waits for the sampler: it takes no reading of its own, so the
// latest reading is the last tick's, up to monitorEvery old.
func (m *monitor) stop() {
	m.cancel()
	<-m.done
}

// figures fills the JSON's server object. after is the reading taken at the end of
// the measured phase (connect: once connected); perConn divides the growth.
func (m *monitor) figures(after serverSample, haveAfter bool, perConn int) ServerStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := ServerStats{Source: "none"}
	if m.src == nil {
		return st
	}
	st.Source = m.src.source()
	if !m.haveFirst {
		if m.err != nil {
			st.Error = m.err.Error()
		}
		return st
	}
	if !haveAfter {
		after = m.last
	}
	st.RSSBefore, st.RSSAfter, st.RSSPeak = m.first.RSS, after.RSS, max(m.peak, after.RSS)
	st.CPUSeconds = m.last.CPU - m.first.CPU
	if perConn > 0 && after.RSS > m.first.RSS {
		st.RSSPerConn = float64(after.RSS-m.first.RSS) / float64(perConn)
	}
	return st
}
