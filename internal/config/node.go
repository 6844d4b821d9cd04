package config

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/switchboard/switchboard/server"
)

// Defaults of the node's own settings.
const (
	DefaultAdmin       = "127.0.0.1:7401"
	DefaultAdminPprof  = "auto"
	DefaultLogLevel    = "info"
	DefaultDrainPeriod = 10 * time.Second
)

// EnvAdminToken is the environment variable that may hold the admin bearer token (see
// Node.AdminTokenFile). It is no setting: no flag or file key sets the token itself.
const EnvAdminToken = EnvPrefix + "ADMIN_TOKEN"

// Node is the configuration of a switchboard node, the binary: the server's settings and
// the binary's own, which the server never reads. server.Config is embedded so that its
// keys stay flat (listen, max-connections, conn-msg-rate, ...) next to the node's
// (admin, log-level, drain-period).
type Node struct {
	server.Config

	// Admin is the admin HTTP address (metrics, health, pprof), served by switchboard
	// serve. Default "127.0.0.1:7401"; "off" disables it. An address that is not loopback
	// requires an admin token (AdminTokenFile or SWITCHBOARD_ADMIN_TOKEN).
	Admin string
	// AdminTokenFile names a file holding the bearer token that every admin request must
	// carry (Authorization: Bearer <token>); surrounding white space is ignored. The token
	// may come from the environment variable SWITCHBOARD_ADMIN_TOKEN instead (EnvAdminToken),
	// never from a flag's value, which any user can read in the process list. Default "":
	// no token, which only a loopback admin address allows.
	AdminTokenFile string
	// AdminPprof serves /debug/pprof/ on the admin listener: on, off, or auto (default):
	// on for a loopback admin address, off otherwise.
	AdminPprof string
	// LogLevel is the log level: debug, info, warn or error. Default info. switchboard
	// serve applies it and re-reads it on SIGHUP.
	LogLevel string
	// DrainPeriod is how long a drain (SIGTERM, SIGUSR2) takes to close every connection
	// after GOAWAY; it is passed to server.Drain. Default 10s; 0 closes them all at once.
	DrainPeriod time.Duration
	// TokenFile names a file holding the shared token (its first line), so that the
	// secret is on no command line; Load reads it into Token. Default "": none. Excludes
	// Token.
	TokenFile string
	// Credentials names a YAML credentials file (LoadCredentials): per-user tokens and
	// permissions instead of one shared token. switchboard serve reads it at start and
	// on SIGHUP. Default "": none. Excludes Token and TokenFile.
	Credentials string
}

// DefaultNode returns a Node with every default filled in (server.DefaultConfig for the
// server's settings): Load starts from it.
func DefaultNode() Node {
	return Node{
		Config:      server.DefaultConfig(),
		Admin:       DefaultAdmin,
		AdminPprof:  DefaultAdminPprof,
		LogLevel:    DefaultLogLevel,
		DrainPeriod: DefaultDrainPeriod,
	}
}

// Validate reports every problem in n, each naming its setting: the server's
// (server.Config.Validate, which applies no defaults) and the node's own.
func (n *Node) Validate() error {
	var errs []error
	if err := n.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if n.Admin != "off" {
		if _, _, err := net.SplitHostPort(n.Admin); err != nil {
			errs = append(errs, fmt.Errorf("config: admin: want host:port or off: %v", err))
		}
	}
	switch n.AdminPprof {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("config: admin-pprof: want auto, on or off, got %q", n.AdminPprof))
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("config: log-level: want debug, info, warn or error, got %q", n.LogLevel))
	}
	if n.DrainPeriod < 0 {
		errs = append(errs, fmt.Errorf("config: drain-period: must not be negative, got %v", n.DrainPeriod))
	}
	if n.Credentials != "" && n.Token != "" {
		errs = append(errs, errors.New("config: credentials: set token (or token-file) or credentials, not both"))
	}
	return errors.Join(errs...)
}
