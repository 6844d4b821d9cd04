// Package config loads a server.Config for cmd/switchboard from, in increasing
// precedence: built-in defaults, the tuning profile's server settings, a YAML file,
// SWITCHBOARD_* environment variables and command-line flags.
//
// Every exported field of server.Config becomes a setting by reflection, so a new field
// is configurable everywhere without touching this package, except for its one-line help
// in help.go (a test fails until it is written). For a field such as MaxConnections:
//
//	key   max-connections               (YAML file, --print-config, error messages)
//	env   SWITCHBOARD_MAX_CONNECTIONS
//	flag  --max-connections
//
// Supported field kinds are string, bool, signed and unsigned integers, floats and
// time.Duration. Integers accept Go syntax (0x10, 1_000); durations accept Go duration
// strings ("5s", "1m30s") everywhere, and a bare YAML integer for a duration is an error
// rather than a guess at its unit. A struct field (say Limits limits.Config) is a
// section: its settings are limits.conn-msg-rate, SWITCHBOARD_LIMITS_CONN_MSG_RATE and
// --limits.conn-msg-rate, set in YAML in a nested "limits:" mapping.
//
// Two settings live outside server.Config: "profile" (SWITCHBOARD_PROFILE, --profile,
// "profile:" in the file; the flag wins over env, env over the file, and "balanced" is
// used when none names one), and the config file itself (SWITCHBOARD_CONFIG, --config),
// which a file cannot set. The named tuning.Profile's server settings apply to every
// field that the file, env and flags leave alone; those fields' source is "profile".
// The profile's Go runtime settings are applied by switchboard serve, not here.
//
// Load reports every problem at once (errors.Join): each setting error is an *Error
// naming the key and where the value came from, wrapping ErrUnknownKey or
// ErrInvalidValue; server.Config.Validate's errors follow.
//
// # Concurrency
//
// The package has no mutable state. Load and LoadFile are safe for concurrent use;
// a Flags belongs to its FlagSet and, like it, to one goroutine.
//
// # Caveats
//
// An empty SWITCHBOARD_* variable counts as unset, so it cannot override a file's value
// with an empty string. A zero value anywhere means "the default", as in server.Config.
package config
