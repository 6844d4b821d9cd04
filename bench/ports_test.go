package bench

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"32768\t60999\n", 32768, 60999, true},
		{"1024 65535", 1024, 65535, true},
		{"60999 32768", 0, 0, false},
		{"32768", 0, 0, false},
		{"a b", 0, 0, false},
		{"0 70000", 0, 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			lo, hi, err := parsePortRange(tc.in)
			if (err == nil) != tc.ok || lo != tc.lo || hi != tc.hi {
				t.Fatalf("parsePortRange(%q) = %d, %d, %v; want %d, %d, ok %v", tc.in, lo, hi, err, tc.lo, tc.hi, tc.ok)
			}
		})
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0200007F:8B9B":                         "127.0.0.2:35739",
		"00000000:0000":                         "0.0.0.0:0",
		"0000000000000000FFFF00000300007F:1CE8": "127.0.0.3:7400", // v4-mapped, unmapped
		"00000000000000000000000001000000:0050": "[::1]:80",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"0100007F", "0100007F:XYZ", "01007F:1F90", "zz00007F:1F90"} {
		if _, err := parseProcAddr(in); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded; want an error", in)
		}
	}
}

// procNetTCP is a /proc/net/tcp with a listener, an established connection and three
// TIME_WAIT sockets: two from 127.0.0.2 and one from 127.0.0.3 to 127.0.0.1:7400.
const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1CE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 11 1 0000000000000000 100 0 0 10 0
   1: 0200007F:8000 0100007F:1CE8 01 00000000:00000000 00:00000000 00000000  1000        0 12 1 0000000000000000 20 4 30 10 -1
   2: 0200007F:8002 0100007F:1CE8 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 0200007F:8004 0100007F:1CE8 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   4: 0300007F:8002 0100007F:1CE8 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   5: garbage
`

func TestParseTimeWait(t *testing.T) {
	tw := map[twPair]int{}
	if err := parseTimeWait(strings.NewReader(procNetTCP), tw); err != nil {
		t.Fatal(err)
	}
	target := netip.MustParseAddrPort("127.0.0.1:7400")
	want := map[twPair]int{
		{netip.MustParseAddr("127.0.0.2"), target}: 2,
		{netip.MustParseAddr("127.0.0.3"), target}: 1,
	}
	if !reflect.DeepEqual(tw, want) {
		t.Fatalf("got %v; want %v", tw, want)
	}
}

func TestPlanPairs(t *testing.T) {
	cfg := Config{Conns: 10, Procs: 2, Addrs: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}}
	// Part 0 owns 0..4 (targets 0,1,2,0,1), part 1 owns 5..9 (2,0,1,2,0).
	want := []pairNeed{
		{"127.0.0.2", "127.0.0.1:1", 2}, {"127.0.0.2", "127.0.0.1:2", 2}, {"127.0.0.2", "127.0.0.1:3", 1},
		{"127.0.0.3", "127.0.0.1:1", 2}, {"127.0.0.3", "127.0.0.1:2", 1}, {"127.0.0.3", "127.0.0.1:3", 2},
	}
	if got := planPairs(cfg); !reflect.DeepEqual(got, want) {
		t.Fatalf("planPairs = %v; want %v", got, want)
	}
	one := planPairs(Config{Conns: 3, Procs: 1, Addrs: []string{"127.0.0.1:1"}})
	if !reflect.DeepEqual(one, []pairNeed{{"", "127.0.0.1:1", 3}}) {
		t.Fatalf("in process: %v", one)
	}
}

func TestCheckPorts(t *testing.T) {
	target := netip.MustParseAddrPort("127.0.0.1:7400")
	tw := map[twPair]int{{netip.MustParseAddr("127.0.0.2"), target}: 5}
	for _, tc := range []struct {
		name    string
		reuse   int
		need    int
		source  string
		held    int
		warning string
	}{
		{"fits", 0, 5, "127.0.0.2", 5, ""},
		{"time-wait-collides", 0, 6, "127.0.0.2", 5, "TIME_WAIT"},
		{"loopback-reuse", 2, 6, "127.0.0.2", 5, ""},
		{"other-source", 0, 10, "127.0.0.3", 0, ""},
		{"any-source", 0, 6, "", 5, "TIME_WAIT"},
		{"too-many", 2, 11, "127.0.0.3", 0, "EADDRNOTAVAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &PortCheck{RangeLo: 100, RangeHi: 109, TWReuse: tc.reuse}
			checkPorts(c, []pairNeed{{tc.source, target.String(), tc.need}}, tw)
			if c.TimeWait != tc.held {
				t.Errorf("TimeWait = %d; want %d", c.TimeWait, tc.held)
			}
			got := strings.Join(c.Warnings, "\n")
			if (tc.warning == "") != (got == "") || !strings.Contains(got, tc.warning) {
				t.Errorf("warnings %q; want one containing %q", got, tc.warning)
			}
		})
	}
}

// TestPortCheckFromFiles runs the whole check against a fake /proc.
func TestPortCheckFromFiles(t *testing.T) {
	root := t.TempDir()
	for name, body := range map[string]string{
		"sys/net/ipv4/ip_local_port_range": "32768\t60999\n",
		"sys/net/ipv4/tcp_tw_reuse":        "0\n",
		"net/tcp":                          procNetTCP,
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Conns: 4, Procs: 2, Addrs: []string{"127.0.0.1:7400"}}
	c := portCheck(cfg, root)
	if c.Error != "" || c.Ports() != 28232 || c.TWReuse != 0 || c.TimeWait != 3 || len(c.Warnings) != 0 {
		t.Fatalf("got %+v; want range 32768-60999, reuse 0, 3 TIME_WAIT, no warning", c)
	}
	var out bytes.Buffer
	c.write(&out, "connect")
	if s := out.String(); !strings.Contains(s, "32768-60999") || !strings.Contains(s, "3 TIME_WAIT") {
		t.Fatalf("printed %q", s)
	}
	if c := portCheck(cfg, filepath.Join(root, "missing")); c.Error == "" {
		t.Fatal("no error without /proc")
	}
}
