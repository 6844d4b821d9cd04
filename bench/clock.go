package bench

import "time"

// clock reads a monotonic time in nanoseconds that is also close to Unix time, so that
// timestamps written into payloads by one process can be compared by another on the
// same machine (route traffic between worker processes). Within a process it never
// jumps, whatever the wall clock does.
type clock struct {
	epoch     time.Time
	epochUnix int64
}

func newClock() clock {
	t := time.Now()
	return clock{epoch: t, epochUnix: t.UnixNano()}
}

// now returns nanoseconds on this clock. Safe for concurrent use.
func (c clock) now() int64 { return c.epochUnix + int64(time.Since(c.epoch)) }

// at converts a time on this clock back to a time.Time.
func (c clock) at(ns int64) time.Time { return c.epoch.Add(time.Duration(ns - c.epochUnix)) }
