package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/cluster"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/tuning"
)

// shutdownTimeout bounds the graceful shutdown after SIGINT or SIGTERM.
const shutdownTimeout = 15 * time.Second

func runServe(c *cli, args []string) int {
	fs := newFlags("serve", "switchboard serve [flags]",
		"Runs a node until SIGINT or SIGTERM; SIGTERM or SIGUSR2 drains it first, SIGHUP re-reads\n"+
			"the configuration. Settings come from defaults, the tuning profile, a YAML file,\n"+
			"SWITCHBOARD_* variables and flags, in increasing precedence.")
	printConfig := fs.Bool("print-config", false, "print the effective configuration as YAML, with each value's source, and exit")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	cf := config.RegisterFlags(fs.FlagSet)
	for _, sec := range config.Sections() {
		fs.Section(sec.Name, sec.Keys...)
	}
	fs.Section(config.SectionConfig, "print-config")
	fs.Section(config.SectionLogging, "log-format")
	fs.Env = configEnv
	if code, done := parseFlags(c, fs, args); done {
		return code
	}

	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q: serve takes only flags", fs.Arg(0)))
	}
	if *logFormat != "text" && *logFormat != "json" {
		problems = append(problems, fmt.Errorf("--log-format: want text or json, got %q", *logFormat))
	}
	loaded, err := config.Load(c.environ, cf)
	if err != nil {
		problems = append(problems, err)
	}
	var access adminAccess
	if err == nil && !*printConfig {
		if access, err = adminAccessFor(loaded.Config, c.environ); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		printProblems(c.stderr, "switchboard serve: ", errors.Join(problems...))
		return exitUsage
	}
	if *printConfig {
		if err := config.WriteYAML(c.stdout, loaded); err != nil {
			fmt.Fprintf(c.stderr, "switchboard serve: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(loaded.Config.LogLevel))
	r := &reloader{env: c.environ, flags: cf, level: level, start: loaded.Config, last: loaded.Config}
	return serve(newLogger(c.stderr, *logFormat, level), loaded, access, r)
}

// parseLevel maps a validated log-level setting to its slog level.
func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// reloader re-reads the configuration on SIGHUP and applies what is safe to change at
// run time: the log level, the server's reloadable limits (server.ReloadableKeys) and,
// on a node started with a credentials file, the credentials file (re-read even when its
// name did not change).
// Other settings need a restart (a drain makes that painless); the log says which changed
// values were not applied.
type reloader struct {
	env   []string
	flags *config.Flags
	level *slog.LevelVar
	start config.Node // the configuration the node started with
	last  config.Node // the last one loaded
}

func (r *reloader) reload(log *slog.Logger, srv *server.Server) {
	l, err := config.Load(r.env, r.flags)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	creds, err := r.credentials(l.Config)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	if err := srv.ReloadLimits(l.Config.Config); err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	if creds != nil {
		if err := srv.ReloadCredentials(creds); err != nil {
			log.Error("credentials not reloaded", "err", err)
		}
	}
	r.level.Set(parseLevel(l.Config.LogLevel))
	reloadable := map[string]bool{"log-level": true, "credentials": creds != nil}
	for _, k := range server.ReloadableKeys {
		reloadable[k] = true
	}
	var applied, pending []string
	for _, f := range config.Fields() {
		switch {
		case reloadable[f.Key] && f.Format(&l.Config) != f.Format(&r.last):
			applied = append(applied, f.Key)
		case !reloadable[f.Key] && f.Format(&l.Config) != f.Format(&r.start):
			pending = append(pending, f.Key)
		}
	}
	r.last = l.Config
	log.Info("configuration reloaded", "log_level", l.Config.LogLevel, "applied", strings.Join(applied, ","),
		"not_applied_until_restart", strings.Join(pending, ","))
}

// credentials reads the credentials file of a reloaded configuration, on a node started
// with one (nil otherwise: switching between a shared token and credentials needs a
// restart, and "not_applied_until_restart" says so).
func (r *reloader) credentials(n config.Node) (*server.Credentials, error) {
	if r.start.Credentials == "" || n.Credentials == "" {
		return nil, nil
	}
	return config.LoadCredentials(n.Credentials)
}

func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs a node until SIGINT or SIGTERM, then shuts it down gracefully.
func serve(log *slog.Logger, l config.Loaded, access adminAccess, r *reloader) int {
	// The profile's runtime half, once, before the server sizes anything from GOMAXPROCS
	// or reads GOMEMLIMIT; Load has already applied its server settings.
	if p, ok := tuning.Lookup(l.Profile); ok {
		if l.Config.JetStreamNode() && p.GOGC > 0 {
			log.Info("cluster node with JetStream: half the profile's GOGC (the directory is in its live heap)",
				"profile_gogc", p.GOGC, "gogc", config.ClusterGOGC(p.GOGC))
			p.GOGC = config.ClusterGOGC(p.GOGC)
		}
		rt := p.ApplyRuntime(os.Getenv, log)
		log.Info("tuning profile applied", append([]any{"profile", p.Name, "memory_budget", p.MemoryBudget}, rt.Attrs()...)...)
	}
	if b := tuning.ReadBacklogs(tuning.DefaultHostPaths()); b.Low() {
		// Not fatal: a node runs with the kernel's defaults, but reconnect storms and
		// floods of silent connections cost its clients more (docs/SECURITY.md).
		log.Warn("kernel backlogs below the recommended (deploy/sysctl.d): a reconnect storm past them is dropped, and a flood of silent connections past them reaches the node through SYN cookies; see switchboard tune check",
			"net.core.somaxconn", b.Somaxconn, "net.ipv4.tcp_max_syn_backlog", b.SynBacklog, "recommended", tuning.RecommendedBacklog)
	}
	opts := []server.Option{server.WithLogger(log)}
	if path := l.Config.Credentials; path != "" {
		creds, err := config.LoadCredentials(path)
		if err != nil {
			log.Error("invalid credentials", "err", err)
			return exitUsage
		}
		log.Info("credentials loaded", "file", path, "users", creds.Len())
		opts = append(opts, server.WithCredentials(creds))
	}
	var admin *adminServer
	adminFailed := make(chan error, 1)
	if l.Config.Admin != "off" && l.Config.Cluster != cluster.ModeOff {
		// Joining can take up to clusterStartTimeout: the admin endpoints answer meanwhile
		// (/healthz 200, /readyz 503 "joining its cluster"), then serve the node.
		var err error
		if admin, err = startAdmin(log, l.Config.Admin, access, nil, adminFailed); err != nil {
			log.Error("admin endpoints failed to start", "err", err)
			return exitFailure
		}
	}
	stopAdmin := func() {
		if admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			_ = admin.shutdown(ctx)
		}
	}
	cn, err := startCluster(log, l.Config)
	switch {
	case errors.Is(err, errInterrupted):
		stopAdmin()
		log.Info("shutdown complete", "err", err)
		return exitOK
	case err != nil:
		log.Error("joining the cluster failed", "err", err)
		stopAdmin()
		return exitFailure
	}
	if cn != nil {
		opts = append(opts, server.WithDirectory(cn.Directory()), server.WithRemote(cn.Forwarder()),
			server.WithDrainStarted(cn.StatusChanged)) // the lease says draining before clients get GOAWAY
		if l.Config.Loops == 0 {
			l.Config.Loops = config.ClusterLoops(runtime.GOMAXPROCS(0))
		}
	}
	srv, err := server.New(l.Config.Config, opts...)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		leaveCluster(context.Background(), log, cn)
		stopAdmin()
		return exitUsage
	}
	if cn != nil {
		// Records from other nodes: until Start, the server answers them NO_ROUTE.
		cn.Forwarder().SetHandler(func(rec []byte) { srv.DeliverRemote(rec) })
	}
	// Subscribe before Start so that a signal during start-up is not lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR2, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := srv.Start(); err != nil {
		log.Error("start failed", "err", err)
		leaveCluster(context.Background(), log, cn)
		stopAdmin()
		return exitFailure
	}
	fenced := make(chan struct{}, 1)
	if cn != nil {
		cn.OnFence(func() {
			select {
			case fenced <- struct{}{}:
			default:
			}
		})
		shareStatus(log, cn, srv, l.Config.ClusterClientAdvertise)
		if srv.Addr() != nil && clientAdvertise(l.Config.ClusterClientAdvertise, srv.Addr()) == "" {
			log.Warn("cluster: no client address to advertise (the listen address is a wildcard): set cluster-client-advertise, or the other nodes send no clients here")
		}
	}
	eff := l.Config
	eff.Config = srv.Config() // the server's resolved values (loops, max-connections)
	logEffective(log, l, eff)

	switch {
	case admin != nil:
		admin.serve(log, access, withCluster(srv.AdminHandler(), cn))
	case eff.Admin != "off":
		if admin, err = startAdmin(log, eff.Admin, access, withCluster(srv.AdminHandler(), cn), adminFailed); err != nil {
			log.Error("admin endpoints failed to start", "err", err)
			shutdown(log, srv, cn, nil)
			return exitFailure
		}
	}

	code := exitOK
	for stop := false; !stop; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				r.reload(log, srv)
				continue
			}
			if sig == syscall.SIGTERM || sig == syscall.SIGUSR2 {
				// Lame duck: GOAWAY to everyone, close in batches over drain-period. A
				// second signal cuts the drain short.
				log.Info("draining", "signal", sig.String(), "period", eff.DrainPeriod)
				drain(log, srv, eff.DrainPeriod, sigs)
			}
			log.Info("shutting down", "signal", sig.String(), "timeout", shutdownTimeout)
		case err := <-adminFailed:
			log.Error("admin endpoints failed; shutting down", "err", err)
			code = exitFailure
		case <-fenced:
			// The directory serves no names any more (cluster/fence.go): send the clients
			// to the other nodes, where they register again, then exit non-zero so that
			// the supervisor restarts the node with a new epoch.
			log.Error("cluster: node fenced; draining its clients to the other nodes, then exiting to be restarted",
				"period", eff.DrainPeriod)
			drain(log, srv, eff.DrainPeriod, sigs)
			code = exitFailure
		}
		stop = true
	}
	signal.Stop(sigs) // a further signal now kills the process the default way
	if !shutdown(log, srv, cn, admin) {
		code = exitFailure
	}
	return code
}

// drain runs srv.Drain for period (plus a margin), or until another signal arrives. In a
// cluster the node's lease says it is draining as Drain begins (WithDrainStarted), so
// that the other nodes stop suggesting it to clients.
func drain(log *slog.Logger, srv *server.Server, period time.Duration, sigs <-chan os.Signal) {
	ctx, cancel := context.WithTimeout(context.Background(), period+5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Drain(ctx, period) }()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("drain incomplete", "err", err)
		}
	case sig := <-sigs:
		log.Warn("drain cut short", "signal", sig.String())
		cancel()
		<-done
	}
}

// shutdown stops the node, then leaves the cluster (after the server, so that the
// names of the connections it closed are released first), then stops the admin
// endpoints (which stay up while the node drains), within shutdownTimeout. It reports
// whether all stopped cleanly.
func shutdown(log *slog.Logger, srv *server.Server, cn *cluster.Node, admin *adminServer) bool {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	ok := true
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("server shutdown incomplete", "err", err)
		ok = false
	}
	if !leaveCluster(ctx, log, cn) {
		ok = false
	}
	if admin != nil {
		if err := admin.shutdown(ctx); err != nil {
			log.Error("admin shutdown incomplete", "err", err)
			ok = false
		}
	}
	if ok {
		log.Info("shutdown complete")
	}
	return ok
}

// leaveCluster closes the cluster node, if any; it reports whether it left cleanly.
func leaveCluster(ctx context.Context, log *slog.Logger, cn *cluster.Node) bool {
	if cn == nil {
		return true
	}
	if err := cn.Close(ctx); err != nil {
		log.Error("leaving the cluster incomplete", "err", err)
		return false
	}
	log.Info("left the cluster")
	return true
}

// logEffective logs every setting's effective value (eff has the server's resolved
// values, such as max-connections), and which settings did not come from defaults.
func logEffective(log *slog.Logger, l config.Loaded, eff config.Node) {
	attrs := []any{slog.String("config_file", l.File), slog.String("profile", l.Profile)}
	var set []string
	for _, f := range config.Fields() {
		if f.Secret {
			attrs = append(attrs, slog.Bool(f.Key+"_set", f.Format(&eff) != ""))
		} else {
			attrs = append(attrs, slog.Any(f.Key, f.Get(&eff)))
		}
		if src := l.Sources[f.Key]; src != config.SourceDefault {
			set = append(set, f.Key+"="+src)
		}
	}
	if src := l.Sources[config.KeyProfile]; src != config.SourceDefault {
		set = append(set, config.KeyProfile+"="+src)
	}
	attrs = append(attrs, slog.String("not_default", strings.Join(set, ",")))
	log.Info("effective configuration", attrs...)
}
