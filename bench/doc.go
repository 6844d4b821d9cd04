// Package bench is switchboard's load generator, behind `switchboard bench SCENARIO`:
// echo, connect, route, overload and soak scenarios against one or more loopback servers
// and failover against a cluster; HDR-style latency histograms, multi-process fan-out
// past the per-process open-file limit, a bare gnet echo floor (package floor), a JSON
// result and SVG plots.
//
// The load is driven on raw net.Conns rather than through package client: one goroutine
// per connection in the closed loop (a read of all buffered answers, then one write with
// all the refills), a sender and a reader per connection in the open loop (sends batched
// per wake-up), reads cut into frames by codec.Reader without allocating, and latencies
// recorded with one atomic add. The generator shares the machine's cores with the
// server, so its cost per frame is what decides how much load it can offer.
//
// A closed-loop connection refills its window as answers come, refusals (ERROR with a
// corr) included: by default at once, the client that ignores the server's advice and
// the hardest load on a node that sheds. With --retry-after, one told to wait (the
// ERROR's retry-after: BUSY, QUEUE_FULL, RATE_LIMITED...) sends nothing new until the
// wait is over, waking from a read deadline at its end if no answer comes before; the
// open loop keeps its schedule either way.
//
// Latency is measured from a timestamp carried in the first 8 bytes of every payload:
// the send time in the closed loop, the intended send time in the open loop (coordinated
// omission; see pacer.Stamp for the one exception, the sender's own timer lateness), and
// for route the sender's stamp read by the receiving connection (end to end; worker
// processes on one machine share the clock), except with --mode request: there the
// stamp comes back in the RESPONSE and the latency is the round trip measured at the
// requester.
//
// # Failover
//
// The failover scenario (failover_config.go: FailoverConfig and its flags; failover.go:
// the run; failover_result.go: the report) is the exception to the raw connections: it
// measures what an application sees when a cluster node dies or hangs, so it drives
// package client, which reconnects and registers its names again. Every
// message gets a record (msgRec) before it is sent, indexed by the id its payload
// carries; the sending goroutine stores the outcome, receivers count arrivals by id, and
// tally adds them up once every call has returned (failover_account.go). After the run it
// compares every surviving node's GET /cluster/names (failover_scan.go).
//
// # Reconnect
//
// connect --reconnect makes the held connections behave like clients when a node goes
// away (reconnect.go): each gets a watcher goroutine that reads and discards what
// arrives (1 KiB reader, no timer) until a read fails, GOAWAY or an ERROR with CLOSING;
// closing our own connections at the end of the hold is no loss. A lost connection
// is dialled again to a random other --addr after the client's jittered backoff
// (100 ms..5 s, internal/backoff; the first attempt waits too), HELLOed and, with
// --register, its name REGISTERed again: UNAVAILABLE and BUSY are asked again on the
// same connection after their retry-after (1 s without one), NAME_TAKEN loses the name
// (its connection is closed, not held), other ERRORs and failures count by code or
// cause and the watcher reconnects. The connection is then held and pinged again (the
// ping loop reads each slot's current connection from an atomic pointer). The result's
// "reconnect" object and summary lines report lost = re-registered + names lost + not
// re-registered at the end, reconnected, and p50/p99/max of loss to reconnected (WELCOME),
// loss to re-registered (REGISTER OK) and first loss to re-registered: measured from the
// first loss any worker saw (parts report absolute times on their shared clock; the
// parent merges them), the takeover time of a killed node for all its connections.
// With SWITCHBOARD_BENCH_STORM_PROFILE=DIR in the environment each process also writes
// a CPU profile of its first 10 s after its first loss to DIR/storm-PID.pprof
// (stormprof.go): where the load generator's own CPU goes during the reconnection storm.
//
// # Processes
//
// A run is split into parts (partSpec), one per process with --procs K, each owning a
// contiguous range of the connections and binding them to source address 127.0.0.(i+2).
// Workers are this binary re-executed as `bench worker`: the spec arrives as the first
// line of stdin, "go RATE" on stdin starts the load (RATE: the part's share of --rate,
// partRates), the end of stdin stops the worker (so a dead parent takes its workers with
// it), and JSON lines on stdout carry "ready", one "tick" per second (counters and that
// second's histogram) and the final "result". The parent merges histograms and counters;
// without --procs (or with --procs 1) the single part runs in a goroutine of the parent,
// with no worker process.
// The floor server is `bench floor-server --listen 127.0.0.1:0`, which prints its address.
//
// # Local ports
//
// A source address is bound with IP_BIND_ADDRESS_NO_PORT (wire_linux.go), so connect(2)
// picks the local port for the destination: each source address reaches the whole
// ephemeral range toward each target, and loopback TIME_WAIT sockets of an earlier run
// are reused (net.ipv4.tcp_tw_reuse 2). Before a run the parent prints the ephemeral range,
// tcp_tw_reuse and the TIME_WAIT sockets toward the targets (/proc/net/tcp, ports.go), and
// warns for every source and target whose connections will not fit. Connections that
// fail are counted by phase and cause (dialerr.go): EADDRNOTAVAIL is a port shortage,
// EMFILE the process's open-file limit, a timeout usually a full accept queue.
//
// # Concurrency
//
// Main may be called from any goroutine; a run owns every goroutine it starts and waits
// for them before returning. Histogram is not safe for concurrent use; atomicHistogram is.
//
// # Caveats
//
//   - Targets are loopback only unless --allow-remote; every run is bounded in connections
//     and time and stops by itself.
//   - Route names are unique per run (bench-RUNID-INDEX), so runs against the same server
//     do not collide; a run with connections that failed to register sees NO_ROUTE.
//   - Server figures need --server-pid (Linux /proc) or --admin (Prometheus /metrics);
//     RSS per connection is only meaningful against a freshly started server.
//   - The load generator reports its own CPU (load_generator in the JSON: this process and
//     its --procs workers) over the same window, per message too. On one machine it shares
//     the cores with the server, so a scenario that costs it more per message (route reads
//     an OK and a MESSAGE on two sockets per message, echo one frame) leaves the server
//     less: compare throughput ratios with both CPU figures in view.
//   - The whole machine's CPU over the same window is reported too (machine in the JSON,
//     from /proc/stat): how busy it was, and how much of it the hypervisor stole for other
//     guests of the host. On a shared VM steal alone has halved a run's throughput; read
//     and compare runs with it in view.
package bench
