package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// maxReplyOutput caps what --reply-with keeps of a command's stdout: a reply larger than
// the node's maximum frame could not be sent anyway.
const maxReplyOutput = codec.DefaultMaxFrame

func runListen(c *cli, args []string) int {
	fs := newFlags("listen", "switchboard listen [flags] NAME...",
		"Registers each NAME (one connection per name, so that every line can say which name a\n"+
			"message was sent to) and prints every MESSAGE and INCOMING request with its sender and\n"+
			"time, until SIGINT or SIGTERM (or --count events). Names are registered again after a\n"+
			"reconnect. Requests are left unanswered (their senders get TIMEOUT) unless --echo or\n"+
			"--reply-with answers them.\n\n"+
			"--reply-with runs CMD with sh -c for each request, the payload on its stdin and\n"+
			"SWITCHBOARD_NAME, SWITCHBOARD_FROM and SWITCHBOARD_FROM_CONN in its environment, and\n"+
			"replies with its stdout. At most --concurrency commands run at once and as many wait;\n"+
			"a request beyond that, a command that exits non-zero or outlives --command-timeout\n"+
			"gets no reply (its sender sees TIMEOUT); the command's stderr goes to ours.\n\n"+
			"Output: one line per event, TIME EVENT to=NAME from=\"CLIENT\" conn=CONN len=N \"PAYLOAD\",\n"+
			"where EVENT is MESSAGE, INCOMING or REPLY and CONN is the sender's connection id in\n"+
			"the notation of docs/PROTOCOL.md (n1/l0/s5/g2); --json: one object per event, with\n"+
			"from_conn as a number, and a NO_REPLY object (with its error) for a request left\n"+
			"unanswered, which without --json goes to stderr. \"listening on NAME\" goes to stderr\n"+
			"once NAME is registered.\n\n"+
			clientExitCodes)
	echo := fs.Bool("echo", false, "reply to every request with its payload")
	replyWith := fs.String("reply-with", "", "reply to every request with the stdout of `CMD` (run with sh -c, payload on stdin)")
	concurrency := fs.Int("concurrency", 4, "--reply-with: commands that may run at once")
	cmdTimeout := fs.Duration("command-timeout", 5*time.Second, "--reply-with: kill a command that runs longer")
	count := fs.Int("count", 0, "exit after this many messages and requests (a request counts once answered or given up); 0: until SIGINT or SIGTERM")
	fs.Section("Answering", "echo", "reply-with", "concurrency", "command-timeout")
	fs.Section("Output", "count")
	cf := addClientFlags(fs)
	names, code, done := parseInterspersed(c, fs, args)
	if done {
		return code
	}
	var problems []string
	if len(names) == 0 {
		problems = append(problems, "want at least one NAME")
	}
	if *echo && *replyWith != "" {
		problems = append(problems, "--echo and --reply-with exclude each other")
	}
	if *concurrency < 1 {
		problems = append(problems, fmt.Sprintf("--concurrency: want at least 1, got %d", *concurrency))
	}
	if *cmdTimeout <= 0 {
		problems = append(problems, fmt.Sprintf("--command-timeout: want a positive duration, got %v", *cmdTimeout))
	}
	if *count < 0 {
		problems = append(problems, fmt.Sprintf("--count: want 0 or more, got %d", *count))
	}
	for _, n := range names {
		if len(n) > codec.MaxNameLen {
			problems = append(problems, fmt.Sprintf("name %.20q...: %d bytes; the limit is %d", n, len(n), codec.MaxNameLen))
		}
	}
	setup, err := cf.resolve(fs, c.environ, "switchboard-listen")
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		fs.Fail(c.stderr, problems[0])
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &listener{
		out:     &syncWriter{w: c.stdout},
		errOut:  &syncWriter{w: c.stderr},
		json:    setup.json,
		echo:    *echo,
		command: *replyWith,
		timeout: *cmdTimeout,
		environ: c.environ,
		limited: *count > 0,
		stop:    cancel,
	}
	l.remaining.Store(int64(*count))
	if l.command != "" {
		l.jobs = make(chan job, *concurrency)
		for range *concurrency {
			l.workers.Add(1)
			go l.work(ctx)
		}
	}
	code = l.run(ctx, c, setup, names)
	if l.jobs != nil {
		cancel() // kills commands still running; their requests time out at the sender
		close(l.jobs)
		l.workers.Wait()
	}
	return code
}

// listener prints what arrives for the names and answers requests.
type listener struct {
	out, errOut *syncWriter
	json        bool
	echo        bool
	command     string        // --reply-with; "" for none
	timeout     time.Duration // per command
	environ     []string
	jobs        chan job       // to the workers; nil without --reply-with; closed after every client
	workers     sync.WaitGroup // the --reply-with workers
	limited     bool           // --count was given
	remaining   atomic.Int64   // events before stopping, when limited
	stop        context.CancelFunc
}

// job is one request waiting for its command.
type job struct {
	name string
	r    *client.Request
}

// run connects one client per name, registers them and waits for ctx to end.
func (l *listener) run(ctx context.Context, c *cli, setup clientSetup, names []string) int {
	var clients []*client.Client
	defer func() {
		// Close waits for the callbacks, so nothing is sent to l.jobs after this.
		for _, cl := range clients {
			_ = cl.Close()
		}
	}()
	logc := &cli{stdout: l.out, stderr: l.errOut, environ: c.environ}
	for _, name := range names {
		cfg := setup.cfg
		cfg.OnMessage = func(m client.Message) { l.message(name, m) }
		cfg.OnRequest = func(r *client.Request) { l.request(ctx, name, r) }
		cl, err := setup.dial(ctx, logc, cfg, slog.LevelInfo)
		if err != nil {
			return report(logc, l.json, "listen", "", err)
		}
		clients = append(clients, cl)
		if err := cl.Register(ctx, name); err != nil {
			return report(logc, l.json, "listen", cl.Addr(), fmt.Errorf("%s: %w", name, err))
		}
		fmt.Fprintf(l.errOut, "switchboard listen: listening on %s (node %s)\n", name, cl.Addr())
	}
	<-ctx.Done()
	return exitOK
}

// message prints a MESSAGE. It runs on the client's reader goroutine.
func (l *listener) message(name string, m client.Message) {
	l.event("MESSAGE", name, m.From, m.FromConn, m.Payload, 0)
	l.counted()
}

// request prints an INCOMING and answers it. It runs on the client's reader goroutine and
// must not block: commands run on the workers.
func (l *listener) request(ctx context.Context, name string, r *client.Request) {
	l.event("INCOMING", name, r.From, r.FromConn, r.Payload, 0)
	switch {
	case l.echo:
		l.reply(name, r, r.Payload, time.Now())
	case l.command != "":
		select {
		case l.jobs <- job{name, r}:
			return
		case <-ctx.Done():
			return
		default:
			l.failed(name, r, fmt.Errorf("%d commands running or waiting; dropped", cap(l.jobs)*2))
		}
	}
	l.counted()
}

// work runs commands until jobs is closed.
func (l *listener) work(ctx context.Context) {
	defer l.workers.Done()
	// A worker holds one job while it waits for the command; the queued ones make up the
	// other half of the bound.
	for j := range l.jobs {
		if ctx.Err() != nil {
			continue
		}
		start := time.Now()
		out, err := l.runCommand(ctx, j)
		if err != nil {
			l.failed(j.name, j.r, err)
		} else {
			l.reply(j.name, j.r, out, start)
		}
		l.counted()
	}
}

// runCommand runs --reply-with for one request and returns its stdout.
func (l *listener) runCommand(ctx context.Context, j job) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", l.command)
	cmd.Stdin = bytes.NewReader(j.r.Payload)
	out := &capWriter{max: maxReplyOutput}
	cmd.Stdout = out
	cmd.Stderr = l.errOut
	cmd.Env = append(append([]string(nil), l.environ...),
		"SWITCHBOARD_NAME="+j.name, "SWITCHBOARD_FROM="+j.r.From,
		"SWITCHBOARD_FROM_CONN="+strconv.FormatUint(j.r.FromConn, 10))
	// A command that leaves a child holding its stdout must not hold the worker forever.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("command killed after --command-timeout %v", l.timeout)
	case err != nil:
		return nil, fmt.Errorf("command failed: %w", err)
	case out.over:
		return nil, fmt.Errorf("command wrote more than %d bytes", out.max)
	}
	return out.buf.Bytes(), nil
}

func (l *listener) reply(name string, r *client.Request, payload []byte, start time.Time) {
	if err := r.Reply(payload); err != nil {
		l.failed(name, r, err)
		return
	}
	l.event("REPLY", name, r.From, r.FromConn, payload, time.Since(start))
}

// failed reports a request left unanswered.
func (l *listener) failed(name string, r *client.Request, err error) {
	if l.json {
		writeJSONLine(l.out, map[string]any{"time": time.Now().Format(time.RFC3339Nano), "event": "NO_REPLY",
			"to": name, "from": r.From, "from_conn": r.FromConn, "error": err.Error()})
		return
	}
	fmt.Fprintf(l.errOut, "switchboard listen: no reply to conn %s on %s (its sender gets TIMEOUT): %v\n",
		shard.ConnID(r.FromConn), name, err)
}

// event prints one line. took is the time a REPLY took, 0 for other events.
func (l *listener) event(kind, name, from string, conn uint64, payload []byte, took time.Duration) {
	now := time.Now()
	if l.json {
		obj := map[string]any{"time": now.Format(time.RFC3339Nano), "event": kind, "to": name, "from": from,
			"from_conn": conn, "len": len(payload)}
		if kind == "REPLY" {
			obj["took_ms"] = millisOf(took)
		}
		writeJSONLine(l.out, payloadJSON(obj, payload))
		return
	}
	fmt.Fprintf(l.out, "%s %s to=%s from=%q conn=%s len=%d %q\n", now.Format("2006-01-02T15:04:05.000Z07:00"),
		kind, name, from, shard.ConnID(conn), len(payload), payload)
}

// counted notes one event and stops the listener after --count of them.
func (l *listener) counted() {
	if l.limited && l.remaining.Add(-1) == 0 {
		l.stop()
	}
}

// syncWriter serialises writes from the clients' goroutines, the workers and the
// commands' stderr copiers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer // guarded by mu
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// capWriter keeps the first max bytes written to it and notes whether there were more.
type capWriter struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	n := len(p)
	if room := w.max - w.buf.Len(); len(p) > room {
		w.over = true
		p = p[:max(room, 0)]
	}
	w.buf.Write(p)
	return n, nil
}
