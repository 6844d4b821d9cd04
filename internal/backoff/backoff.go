// Package backoff is the reconnect wait shared by package client and the load generator
// (bench connect --reconnect), so that both back off the same way.
//
// # Concurrency
//
// Jittered is safe for concurrent use (it draws from math/rand/v2's global source).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jittered returns the wait before reconnect attempt n (from 0): uniformly random in
// [lo, min(hi, lo·2^(n+1))].
func Jittered(lo, hi time.Duration, n int) time.Duration {
	ceil := hi
	if n < 30 {
		if c := lo << (n + 1); c > 0 && c < hi {
			ceil = c
		}
	}
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}
