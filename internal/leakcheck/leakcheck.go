// Package leakcheck holds the goleak options that every test package using gnet needs.
package leakcheck

import "go.uber.org/goleak"

// GnetPool returns options that ignore gnet's worker pool (ants): importing gnet starts
// its default pool, whose purge and ticktock goroutines live for the process.
func GnetPool() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	}
}
