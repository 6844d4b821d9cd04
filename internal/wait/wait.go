// Package wait is the test helper that polls a condition with a deadline instead of
// sleeping: tests wait on an event (a counter reaching a value, a state changing), never
// on a duration. It imports nothing of the project, so every package's tests can use it,
// the server's own internal tests included (internal/testserver cannot be imported there:
// it imports server).
//
// # Concurrency
//
// For is called from the test goroutine; cond runs on it too.
package wait

import (
	"testing"
	"time"
)

// Deadline is how long For waits: generous, because a loaded CI machine can be slow and
// a passing test never waits this long.
const Deadline = 10 * time.Second

// For polls cond every 2 ms until it holds, failing the test with "timed out waiting for
// what" after Deadline.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
