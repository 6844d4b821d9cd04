// Package config loads the configuration of a switchboard node (Node: the embedded
// server.Config plus the binary's own admin, log-level and drain-period) for
// cmd/switchboard from, in increasing precedence: built-in defaults (DefaultNode), the
// tuning profile's settings, a YAML file, SWITCHBOARD_* environment variables and
// command-line flags.
//
// Imports: cmd/switchboard → config → {server, tuning, limits}. The package reads
// server.Config's fields by reflection and tuning's profiles as key/value text;
// tuning does not import server, and server imports neither.
//
// Every exported field of Node, and of the server.Config it embeds, becomes a setting by
// reflection, so a new field is configurable everywhere without touching this package,
// except for its one-line help in help.go (a test fails until it is written). For a
// field such as MaxConnections:
//
//	key   max-connections               (YAML file, --print-config, error messages)
//	env   SWITCHBOARD_MAX_CONNECTIONS
//	flag  --max-connections
//
// Supported field kinds are string, bool, signed and unsigned integers, floats and
// time.Duration. Integers accept Go syntax (0x10, 1_000); durations accept Go duration
// strings ("5s", "1m30s") everywhere, and a bare YAML integer for a duration is an error
// rather than a guess at its unit. The settings whose 0 means off (idle-timeout, the
// rates, ...; Field.ZeroMeansOff) also accept the word off. A struct field (say Limits
// limits.Config) is a section: its settings are limits.conn-msg-rate,
// SWITCHBOARD_LIMITS_CONN_MSG_RATE and --limits.conn-msg-rate, set in YAML in a nested
// "limits:" mapping; an embedded struct's settings are flat.
//
// Two settings live outside Node: "profile" (SWITCHBOARD_PROFILE, --profile,
// "profile:" in the file; the flag wins over env, env over the file, and "balanced" is
// used when none names one), and the config file itself (SWITCHBOARD_CONFIG, --config),
// which a file cannot set. The named tuning.Profile's Settings apply to every key that
// the file, env and flags leave alone; those keys' source is "profile". The profile's Go
// runtime settings are applied by switchboard serve, not here.
//
// Defaults are applied once: Load starts from DefaultNode, every default filled in, and
// validates the result without filling anything, so an explicit 0 survives where 0 means
// off and is an error naming the key where it means nothing.
//
// Load reports every problem at once (errors.Join): each setting error is an *Error
// naming the key and where the value came from, wrapping ErrUnknownKey or
// ErrInvalidValue; Node.Validate's errors follow.
//
// # Concurrency
//
// The package has no mutable state. Load and LoadFile are safe for concurrent use;
// a Flags belongs to its FlagSet and, like it, to one goroutine.
//
// # Caveats
//
// An empty SWITCHBOARD_* variable counts as unset, so it cannot override a file's value
// with an empty string (write the key in the file, or use a flag).
package config
