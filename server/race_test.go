//go:build race

package server

// raceEnabled: the race detector makes sync.Pool drop items on purpose, so allocation
// counts of pooled paths are only meaningful without it.
const raceEnabled = true
