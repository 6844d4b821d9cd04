package cluster

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/leakcheck"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakcheck.GnetPool()...)
}
