//go:build !unix

package tuning

// noFileLimit is Unknown where there is no RLIMIT_NOFILE.
func noFileLimit() (soft, hard int64) { return Unknown, Unknown }
