package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tswitchboard\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	got, err := parseVMRSS([]byte(status))
	if err != nil || got != 12345*1024 {
		t.Fatalf("parseVMRSS = %d, %v; want %d", got, err, 12345*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVMRSS([]byte(bad)); err == nil {
			t.Errorf("parseVMRSS(%q) succeeded; want an error", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime=250, stime=50 ticks.
	stat := "4242 (sw (board) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 2000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3.0 {
		t.Fatalf("parseStatCPU = %v, %v; want 3.0", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 zz 2"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) succeeded; want an error", bad)
		}
	}
}

func TestProcSampler(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "77")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "status"), []byte("VmRSS:\t2048 kB\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "stat"), []byte("77 (a b) R 1 1 1 0 -1 0 0 0 0 0 120 30 0 0\n"), 0o644)
	s, err := procSampler{pid: 77, root: root}.sample(context.Background())
	if err != nil || s.RSS != 2048*1024 || s.CPU != 1.5 {
		t.Fatalf("sample = %+v, %v; want RSS 2 MiB, CPU 1.5s", s, err)
	}
	// And the real thing: this test process.
	s, err = procSampler{pid: os.Getpid(), root: "/proc"}.sample(context.Background())
	if err != nil || s.RSS == 0 {
		t.Fatalf("sampling self = %+v, %v; want a positive RSS", s, err)
	}
}

const metricsText = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
switchboard_connections{loop="0"} 17
# HELP process_resident_memory_bytes Resident memory size in bytes.
process_resident_memory_bytes 4.2e+07
`

func TestParseMetrics(t *testing.T) {
	s, err := parseMetrics(strings.NewReader(metricsText))
	if err != nil || s.RSS != 42_000_000 || s.CPU != 12.5 {
		t.Fatalf("parseMetrics = %+v, %v; want RSS 42e6, CPU 12.5", s, err)
	}
	labelled := "process_resident_memory_bytes{job=\"a b\"} 100\nprocess_cpu_seconds_total 1\n"
	if s, err := parseMetrics(strings.NewReader(labelled)); err != nil || s.RSS != 100 {
		t.Fatalf("labelled: %+v, %v", s, err)
	}
	if _, err := parseMetrics(strings.NewReader("up 1\n")); err == nil {
		t.Fatal("metrics without process figures parsed; want an error")
	}
}

func TestAdminSampler(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, metricsText)
	}))
	defer ts.Close()
	a := newAdminSampler(strings.TrimPrefix(ts.URL, "http://"))
	s, err := a.sample(context.Background())
	if err != nil || s.RSS != 42_000_000 || s.CPU != 12.5 {
		t.Fatalf("sample = %+v, %v", s, err)
	}
	m := startMonitor(context.Background(), a)
	m.stop()
	st := m.figures(serverSample{RSS: 42_000_000 + 1000}, true, 10)
	if st.Source != a.source() || st.RSSBefore != 42_000_000 || st.RSSPerConn != 100 {
		t.Fatalf("figures = %+v", st)
	}
	a.client.CloseIdleConnections()
}
