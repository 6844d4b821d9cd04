package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"

	"github.com/switchboard/switchboard/internal/wait"
)

// TestStormProfile: with StormProfileEnv set, the first loss starts a CPU profile that the
// end of the hold (its context) stops and writes; without it nothing is written.
func TestStormProfile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(StormProfileEnv, "")
	profileStorm(context.Background()) // unset: nothing, and the once is not spent
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files written with the variable unset", len(ents))
	}
	t.Setenv(StormProfileEnv, dir)
	ctx, cancel := context.WithCancel(context.Background())
	profileStorm(ctx)
	profileStorm(ctx) // a second loss in the process: no second profile
	cancel()
	var path string
	wait.For(t, "the profile written", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "storm-*.pprof"))
		if len(m) != 1 {
			return false
		}
		path = m[0]
		st, err := os.Stat(path)
		return err == nil && st.Size() > 0
	})
	// Written means stopped: a new profile can start (another test's, or the next run's).
	wait.For(t, "the profiler free again", func() bool {
		f, err := os.CreateTemp(t.TempDir(), "p")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return false
		}
		pprof.StopCPUProfile()
		return true
	})
}
