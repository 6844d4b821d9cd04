//go:build !unix

package bench

// loadGenCPU is not measured here.
func loadGenCPU() float64 { return 0 }
