package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts this node's nats-server and waits until its listeners are up.
// Listener readiness is not JetStream readiness: Start waits for the KV separately.
func startEmbedded(cfg *Config, log *slog.Logger) (*natsserver.Server, error) {
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen: %w", err)
	}
	if port == 0 { // as for net.Listen: any free port (nats-server says -1; its 0 is "no routes")
		port = natsserver.RANDOM_PORT
	}
	var routes []string
	for _, r := range splitList(cfg.Routes) {
		if !strings.Contains(r, "://") {
			r = "nats://" + r
		}
		routes = append(routes, r)
	}
	opts := &natsserver.Options{
		ServerName: cfg.serverName(),
		// The client listener is required even though this process connects in-process:
		// with DontListen the routes never start and Shutdown blocks forever
		// (shared/CLUSTER.md, hazard 1). Loopback, random port.
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		NoSigs:    true, // switchboard owns the signals
		JetStream: cfg.JetStream,
		// One batch of forwarded records is one NATS message (forward.go): large enough
		// for a frame of the largest default max-frame (1 MiB) and more.
		MaxPayload: embeddedMaxPayload,
	}
	if cfg.JetStream {
		opts.StoreDir = cfg.storeDir(os.TempDir())
		// The directory's buckets are small (a few hundred bytes per name); these caps
		// keep JetStream from reserving the host's defaults (75% of memory and disk).
		opts.JetStreamMaxMemory = 256 << 20
		opts.JetStreamMaxStore = 4 << 30
	}
	// Without routes the node is a cluster of one: a clustered JetStream with no route
	// waits for one forever, so it runs standalone (and no route listener is opened).
	if len(routes) > 0 || cfg.seed {
		opts.Cluster = natsserver.ClusterOpts{Name: cfg.Name, Host: host, Port: port, Advertise: cfg.Advertise}
		opts.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: nats-server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("cluster: nats-server did not start listening within 10s (route address %s)", cfg.Listen)
	}
	if cfg.routeListen != nil {
		cfg.routeListen(ns.ClusterAddr().String())
	}
	return ns, nil
}

func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// natsLogger bridges nats-server's Logger to slog. Fatalf only logs: the embedded
// server must never end the process (switchboard decides that), and nats-server calls
// Fatalf for conditions the node survives, such as a route listener that cannot bind.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), "nats_level", "fatal")
}
func (l natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, v...))
	}
}
func (l natsLogger) Tracef(format string, v ...any) {}
