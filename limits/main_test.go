package limits

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sec = int64(1e9)

// base is an arbitrary non-zero start for fake clocks, so that tests do not depend on
// now starting at 0.
const base = int64(1_000) * sec
