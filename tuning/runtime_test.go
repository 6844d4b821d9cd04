package tuning

import (
	"bytes"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// saveRuntime restores the process's GC percentage, memory limit and GOMAXPROCS when
// the test ends.
func saveRuntime(t *testing.T) {
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	limit := debug.SetMemoryLimit(-1)
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
		runtime.GOMAXPROCS(procs)
	})
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestApplyRuntimeFromProfile(t *testing.T) {
	saveRuntime(t)
	p := Profile{Name: "test", GOGC: 77, GOMEMLIMIT: 123 * MiB, GOMAXPROCS: 1}
	rs := p.ApplyRuntime(envOf(nil), nil)
	want := RuntimeSettings{GOGC: 77, GOGCSource: SourceProfile, GOMEMLIMIT: 123 * MiB, GOMEMLIMITSource: SourceProfile,
		GOMAXPROCS: 1, GOMAXPROCSSource: SourceProfile}
	if rs != want {
		t.Errorf("ApplyRuntime = %+v; want %+v", rs, want)
	}
	if got := debug.SetMemoryLimit(-1); got != 123*MiB {
		t.Errorf("memory limit = %d; want %d", got, 123*MiB)
	}
	if got := currentGOGC(); got != 77 {
		t.Errorf("GOGC = %d; want 77", got)
	}
}

func TestApplyRuntimeEnvWins(t *testing.T) {
	saveRuntime(t)
	// What the runtime would have applied from the variables before main.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(64 * MiB)
	procs := runtime.GOMAXPROCS(0)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p := Profile{Name: "test", GOGC: 77, GOMEMLIMIT: 123 * MiB, GOMAXPROCS: procs + 1}
	rs := p.ApplyRuntime(envOf(map[string]string{"GOGC": "off", "GOMEMLIMIT": "64MiB", "GOMAXPROCS": "9"}), log)
	want := RuntimeSettings{GOGC: -1, GOGCSource: SourceEnv, GOMEMLIMIT: 64 * MiB, GOMEMLIMITSource: SourceEnv,
		GOMAXPROCS: procs, GOMAXPROCSSource: SourceEnv}
	if rs != want {
		t.Errorf("ApplyRuntime = %+v; want %+v", rs, want)
	}
	for _, v := range []string{"variable=GOGC", "variable=GOMEMLIMIT", "variable=GOMAXPROCS", "profile=test"} {
		if !strings.Contains(logs.String(), v) {
			t.Errorf("log lacks %q:\n%s", v, logs.String())
		}
	}
}

func TestApplyRuntimeLeavesUnsetAlone(t *testing.T) {
	saveRuntime(t)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	rs := Profile{Name: "empty"}.ApplyRuntime(envOf(nil), nil)
	if rs.GOGC != 100 || rs.GOGCSource != SourceRuntime || rs.GOMEMLIMIT != math.MaxInt64 ||
		rs.GOMEMLIMITSource != SourceRuntime || rs.GOMAXPROCSSource != SourceRuntime {
		t.Errorf("ApplyRuntime of an empty profile = %+v; want the runtime's values", rs)
	}
	attrs := rs.Attrs()
	if len(attrs) != 6 {
		t.Fatalf("Attrs() has %d attributes; want 6", len(attrs))
	}
	if a := attrs[2].(slog.Attr); a.Key != "gomemlimit" || a.Value.Int64() != 0 {
		t.Errorf("Attrs()[2] = %v; want gomemlimit=0 for no limit", a)
	}
}
