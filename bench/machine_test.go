package bench

import (
	"os"
	"path/filepath"
	"testing"
)

func writeStat(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReadCPUTicks(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content string
		want    cpuTicks
		ok      bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"linux", "cpu  100 5 50 800 20 1 2 22 7 0\ncpu0 50 2 25 400 10 0 1 11 3 0\nintr 1\n",
			cpuTicks{steal: 22, idle: 820, total: 1000}, true},
		{"aggregate line not first", "intr 5\ncpu  1 0 0 1 0 0 0 0\n", cpuTicks{idle: 1, total: 2}, true},
		{"no cpu line", "cpu0 1 2 3 4 5 6 7 8\n", cpuTicks{}, false},
		{"too few fields", "cpu  1 2 3\n", cpuTicks{}, false},
		{"not a number", "cpu  1 2 x 4 5 6 7 8\n", cpuTicks{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := readCPUTicks(writeStat(t, tt.content))
			if got != tt.want || ok != tt.ok {
				t.Errorf("readCPUTicks = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if _, ok := readCPUTicks(t.TempDir()); ok {
		t.Error("a missing stat file read as ok")
	}
}

func TestMachineStats(t *testing.T) {
	a := cpuTicks{steal: 10, idle: 100, total: 1000}
	m := machineStats(a, cpuTicks{steal: 60, idle: 300, total: 2000}, true)
	if m == nil || m.StealPct != 5 || m.BusyPct != 75 {
		t.Errorf("machineStats = %+v; want steal 5%%, busy 75%%", m)
	}
	for _, b := range []cpuTicks{a, {steal: 5, idle: 100, total: 2000}} {
		if m := machineStats(a, b, true); m != nil {
			t.Errorf("machineStats(%+v, %+v) = %+v; want nil", a, b, m)
		}
	}
	if m := machineStats(a, cpuTicks{steal: 60, idle: 300, total: 2000}, false); m != nil {
		t.Errorf("a failed reading gave %+v", m)
	}
}
