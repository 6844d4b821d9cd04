package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/leakcheck"
)

// childEnv makes the test binary act as the bench binary's re-executed child (a --procs
// worker or the floor server), so that tests exercise the real process fan-out without a
// built switchboard binary.
const childEnv = "SWITCHBOARD_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(mainWith(os.Args[1:], os.Stdout, os.Stderr, runner{}))
	}
	goleak.VerifyTestMain(m, leakcheck.GnetPool()...)
}
