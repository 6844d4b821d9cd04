package tuning

import (
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
)

// Where a runtime setting's effective value came from.
const (
	SourceEnv     = "env"     // the GOGC, GOMEMLIMIT or GOMAXPROCS variable
	SourceProfile = "profile" // the tuning profile
	SourceRuntime = "runtime" // neither: the Go runtime's own default
)

// RuntimeSettings are the Go runtime's effective settings after ApplyRuntime, for logging.
type RuntimeSettings struct {
	// GOGC is the GC target percentage; -1 means off.
	GOGC       int
	GOGCSource string
	// GOMEMLIMIT is the soft memory limit in bytes; math.MaxInt64 means none.
	GOMEMLIMIT       int64
	GOMEMLIMITSource string
	// GOMAXPROCS is the number of threads running Go code.
	GOMAXPROCS       int
	GOMAXPROCSSource string
}

// ApplyRuntime sets the Go runtime's GOGC, GOMEMLIMIT and GOMAXPROCS from the profile,
// except where the environment variable of the same name is set: the runtime applied
// those before main, and an operator's explicit variable wins over a profile. env looks
// up a variable (os.Getenv); log, which may be nil, gets a line for each variable that
// overrides the profile. It returns the effective values.
//
// It changes process-wide state: call it once, at start-up, before the server starts
// (switchboard serve does). Not safe for concurrent use with itself or with other
// callers of debug.SetGCPercent, debug.SetMemoryLimit or runtime.GOMAXPROCS.
func (p Profile) ApplyRuntime(env func(string) string, log *slog.Logger) RuntimeSettings {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rs RuntimeSettings
	override := func(name, value string, profileValue string) {
		if profileValue != "" {
			log.Info("environment overrides tuning profile", "variable", name, "value", value,
				"profile", p.Name, "profile_value", profileValue)
		}
	}

	rs.GOGCSource = SourceRuntime
	switch v := env("GOGC"); {
	case v != "":
		rs.GOGCSource = SourceEnv
		override("GOGC", v, intOrEmpty(p.GOGC))
	case p.GOGC > 0:
		debug.SetGCPercent(p.GOGC)
		rs.GOGCSource = SourceProfile
	}
	rs.GOGC = currentGOGC()

	rs.GOMEMLIMITSource = SourceRuntime
	switch v := env("GOMEMLIMIT"); {
	case v != "":
		rs.GOMEMLIMITSource = SourceEnv
		override("GOMEMLIMIT", v, intOrEmpty(int(p.GOMEMLIMIT)))
	case p.GOMEMLIMIT > 0:
		debug.SetMemoryLimit(p.GOMEMLIMIT)
		rs.GOMEMLIMITSource = SourceProfile
	}
	rs.GOMEMLIMIT = debug.SetMemoryLimit(-1) // a negative limit reads without changing

	rs.GOMAXPROCSSource = SourceRuntime
	switch v := env("GOMAXPROCS"); {
	case v != "":
		rs.GOMAXPROCSSource = SourceEnv
		override("GOMAXPROCS", v, intOrEmpty(p.GOMAXPROCS))
	case p.GOMAXPROCS > 0:
		// An explicit value stops the runtime from following cgroup CPU limit changes;
		// profiles leave it at 0 for that reason.
		runtime.GOMAXPROCS(p.GOMAXPROCS)
		rs.GOMAXPROCSSource = SourceProfile
	}
	rs.GOMAXPROCS = runtime.GOMAXPROCS(0)
	return rs
}

// Attrs returns the settings as slog attributes: gogc, gomemlimit (bytes, 0 for none),
// gomaxprocs, each with a _source.
func (rs RuntimeSettings) Attrs() []any {
	limit := rs.GOMEMLIMIT
	if limit == math.MaxInt64 {
		limit = 0
	}
	return []any{
		slog.Int("gogc", rs.GOGC), slog.String("gogc_source", rs.GOGCSource),
		slog.Int64("gomemlimit", limit), slog.String("gomemlimit_source", rs.GOMEMLIMITSource),
		slog.Int("gomaxprocs", rs.GOMAXPROCS), slog.String("gomaxprocs_source", rs.GOMAXPROCSSource),
	}
}

func intOrEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// currentGOGC reads the GC percentage without changing it; -1 means off.
func currentGOGC() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	v := s[0].Value.Uint64()
	if v > math.MaxInt32 { // the runtime stores off (-1) as an int32 and reports it unsigned
		return -1
	}
	return int(v)
}

// FormatBytes renders a byte count the way GOMEMLIMIT accepts it: 140MiB, 1GiB, 1536KiB,
// or plain bytes; "none" for 0 or math.MaxInt64.
func FormatBytes(n int64) string {
	switch {
	case n <= 0 || n == math.MaxInt64:
		return "none"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n%MiB == 0:
		return strconv.FormatInt(n/MiB, 10) + "MiB"
	case n%KiB == 0:
		return strconv.FormatInt(n/KiB, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}
