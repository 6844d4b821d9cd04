package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// StormProfileEnv names a directory: connect --reconnect then writes a CPU profile of
// each process for stormProfileFor from its first loss (storm-PID.pprof), which is where
// the load generator's own CPU goes during a reconnection storm (docs/BENCHMARKS.md).
// A diagnostic, off unless set.
const StormProfileEnv = "SWITCHBOARD_BENCH_STORM_PROFILE"

const stormProfileFor = 10 * time.Second

var stormOnce sync.Once

// profileStorm starts the storm's CPU profile if StormProfileEnv is set, once per process
// (at the first loss any of its parts sees).
func profileStorm(ctx context.Context) {
	dir := os.Getenv(StormProfileEnv)
	if dir == "" {
		return
	}
	stormOnce.Do(func() { startStormProfile(ctx, dir) })
}

func startStormProfile(ctx context.Context, dir string) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("storm-%d.pprof", os.Getpid())))
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return
	}
	go func() {
		t := time.NewTimer(stormProfileFor)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		pprof.StopCPUProfile()
		_ = f.Close()
	}()
}
