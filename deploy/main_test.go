package deploy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if its tests leave goroutines behind: they start nodes
// (gnet and an embedded NATS server), an HTTP server and haproxy's pipes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// gnet's worker pool (ants) keeps its purge and ticktock goroutines for the
		// process.
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	)
}
