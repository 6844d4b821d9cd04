package deploy

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/leakcheck"
)

// TestMain fails the package if its tests leave goroutines behind: they start nodes
// (gnet and an embedded NATS server), an HTTP server and haproxy's pipes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakcheck.GnetPool()...)
}
