package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// childEnv makes the test binary act as the bench binary's re-executed child (a --procs
// worker or the floor server), so that tests exercise the real process fan-out without a
// built switchboard binary.
const childEnv = "SWITCHBOARD_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(mainWith(os.Args[1:], os.Stdout, os.Stderr, runner{}))
	}
	goleak.VerifyTestMain(m,
		// gnet's worker pool (ants) keeps its purge and ticktock goroutines for the process.
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	)
}
