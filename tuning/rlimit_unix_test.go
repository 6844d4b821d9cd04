//go:build unix

package tuning

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestNoFileSoftAtStart re-runs this test binary under `ulimit -Sn 1024`: the Go runtime
// raises the child's soft limit to the hard one, yet ReadHost must report 1024, the limit
// the child was started with.
func TestNoFileSoftAtStart(t *testing.T) {
	if os.Getenv("TUNING_PRINT_NOFILE") == "1" {
		r := ReadHost()
		fmt.Printf("soft=%d hard=%d\n", r.NoFileSoft, r.NoFileHard)
		return
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max <= 1024 {
		t.Skipf("hard open-file limit %d leaves no room below it", rl.Max)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `ulimit -Sn 1024 && exec "$0" -test.run='^TestNoFileSoftAtStart$'`, exe)
	cmd.Env = append(os.Environ(), "TUNING_PRINT_NOFILE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("soft=1024 hard=%d\n", rl.Max); !strings.Contains(string(out), want) {
		t.Errorf("child printed %q; want %q", out, want)
	}
}

func TestParseUlimit(t *testing.T) {
	for in, want := range map[string]int64{"1024\n": 1024, "unlimited\n": math.MaxInt64, "": Unknown, "lots": Unknown} {
		if got := parseUlimit(in); got != want {
			t.Errorf("parseUlimit(%q) = %d; want %d", in, got, want)
		}
	}
}
