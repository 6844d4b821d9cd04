package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/bench/floor"
)

// runner runs one bench invocation: the switchboard pass and, with --floor, the floor pass.
type runner struct {
	cfg    Config
	stderr io.Writer

	// exe and exeArgs re-execute this program: exe exeArgs... worker | floor-server.
	exe     string
	exeArgs []string
	env     []string
	// inProcess runs every part as a goroutine and the floor in process, so that tests
	// need no binary; --procs then still splits connections and source addresses. A pass
	// of one part (--procs 1, the default) runs it as a goroutine either way; without
	// inProcess the floor server is still a child process.
	inProcess bool
	// proc is where the port check reads /proc ("" means /proc).
	proc string
}

func (r *runner) procRoot() string {
	if r.proc == "" {
		return "/proc"
	}
	return r.proc
}

// partHandle is a running part, in process or in a worker.
type partHandle struct {
	msgs  <-chan partMsg     // closed when the part has ended
	start func(rate float64) // go, with the part's share of the open-loop rate (partRates)
	abort func()             // stop early (idempotent)
	wait  func() error       // after msgs closed: the worker's exit
}

func startInProcess(ctx context.Context, spec partSpec) *partHandle {
	ch := make(chan partMsg, 16)
	goCh := make(chan float64, 1)
	ctx, cancel := context.WithCancel(ctx)
	var once sync.Once
	go func() {
		defer close(ch)
		runPart(ctx, spec, func(m partMsg) { ch <- m }, goCh)
	}()
	return &partHandle{msgs: ch, start: func(rate float64) { once.Do(func() { goCh <- rate }) }, abort: cancel,
		wait: func() error { cancel(); return nil }}
}

func (r *runner) startWorker(ctx context.Context, spec partSpec) (*partHandle, error) {
	cmd := exec.Command(r.exe, append(append([]string{}, r.exeArgs...), "worker")...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stderr = r.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker %d: %w", spec.Index, err)
	}
	line, _ := json.Marshal(spec)
	_, _ = stdin.Write(append(line, '\n'))
	ch := make(chan partMsg, 16)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(ch)
		dec := json.NewDecoder(bufio.NewReaderSize(stdout, 256<<10))
		for {
			var m partMsg
			if err := dec.Decode(&m); err != nil {
				if !errors.Is(err, io.EOF) {
					ch <- partMsg{Kind: "error", Err: fmt.Sprintf("worker %d: bad output: %v", spec.Index, err)}
				}
				return
			}
			ch <- m
		}
	}()
	var mu sync.Mutex
	closed := false
	closeStdin := func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			closed = true
			_ = stdin.Close() // the worker stops when its stdin ends
		}
	}
	stopKill := context.AfterFunc(ctx, closeStdin)
	return &partHandle{
		msgs: ch,
		start: func(rate float64) {
			mu.Lock()
			defer mu.Unlock()
			if !closed {
				_, _ = io.WriteString(stdin, "go "+strconv.FormatFloat(rate, 'g', -1, 64)+"\n")
			}
		},
		abort: closeStdin,
		wait: func() error {
			<-readDone
			closeStdin()
			stopKill()
			return cmd.Wait()
		},
	}, nil
}

// passResult is one pass (against switchboard or against the floor) merged over parts.
type passResult struct {
	conns      connCounts
	sent, recv uint64
	unanswered uint64 // partResult.Unanswered, summed
	connErrs   uint64 // partResult.ConnErrors, summed
	errs       map[string]uint64
	hist       *Histogram
	durationNs int64
	probe      *probeResult
	reconnect  *ReconnectStats // connect --reconnect
	series     []Point
	after      serverSample
	haveAfter  bool
	failed     []string
}

// pass runs the configured load against addrs with every part and merges the results.
func (r *runner) pass(ctx context.Context, addrs []string, isFloor bool, mon *monitor, label string) *passResult {
	cfg := r.cfg
	cfg.Addrs = addrs
	k := cfg.Procs
	t0 := time.Now()
	runID := fmt.Sprintf("%x", t0.UnixNano()&0xffffffffff)
	pr := &passResult{errs: map[string]uint64{}, hist: NewHistogram(),
		conns: connCounts{RefusedByCode: map[string]int{}}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	handles := make([]*partHandle, 0, k)
	specs := make([]partSpec, 0, k)
	for i := range k {
		spec := partSpec{Cfg: cfg, Index: i, Parts: k, First: i * cfg.Conns / k,
			N: (i+1)*cfg.Conns/k - i*cfg.Conns/k, RunID: runID, Floor: isFloor, T0: t0.UnixNano()}
		spec.Source = partSource(i, k)
		specs = append(specs, spec)
		if r.inProcess || k == 1 {
			handles = append(handles, startInProcess(ctx, spec))
			continue
		}
		h, err := r.startWorker(ctx, spec)
		if err != nil {
			pr.failed = append(pr.failed, err.Error())
			break
		}
		handles = append(handles, h)
	}
	type event struct {
		i      int
		m      partMsg
		closed bool
	}
	events := make(chan event)
	for i, h := range handles {
		go func() {
			for m := range h.msgs {
				events <- event{i: i, m: m}
			}
			events <- event{i: i, closed: true}
		}()
	}
	if len(pr.failed) > 0 {
		cancel()
	}

	ready, open := 0, len(handles)
	aborted := false // by us: the parts' and workers' errors that follow are not news
	results := make([]*partResult, len(handles))
	readyEst := make([]int, len(handles)) // connections each part established
	lastRecv := make([]uint64, len(handles))
	lastSent := make([]uint64, len(handles))
	lastErrs := make([]uint64, len(handles))
	bySec := map[int]*Histogram{}
	recvBySec := map[int]uint64{}
	statusHist := NewHistogram()
	var statusRecv uint64
	var measured <-chan time.Time
	partsAt := map[int]int{}
	measureFor := cfg.Duration
	if cfg.Scenario == ScenarioOverload {
		measureFor = cfg.Baseline + cfg.Duration
	}
	// While connecting: the parts' latest progress and a status line every interval.
	prog := make([]progress, len(handles))
	var lastProg progress
	lastProgAt := t0
	progTick := time.NewTicker(cfg.Interval)
	defer progTick.Stop()
	readyBound := time.NewTimer(cfg.Timeout + time.Duration(float64(cfg.Conns)/math.Max(cfg.Ramp, 1)*float64(time.Second)) + 30*time.Second)
	defer readyBound.Stop()

	for open > 0 {
		select {
		case ev := <-events:
			if ev.closed {
				open--
				continue
			}
			switch ev.m.Kind {
			case "progress":
				if ev.m.Progress != nil && ready < len(handles) {
					prog[ev.i] = *ev.m.Progress
				}
			case "ready":
				if ev.m.Ready != nil {
					pr.conns.add(*ev.m.Ready)
					readyEst[ev.i] = ev.m.Ready.Established
				}
				ready++
				if ready == len(handles) {
					readyBound.Stop()
					progTick.Stop()
					if pr.conns.Established == 0 && pr.conns.Refused == 0 {
						// Nothing answered at all: putting load on no connection would only
						// wait out --duration. Fail now, saying where nothing listened.
						pr.failed = append(pr.failed, nothingListens(addrs, pr.conns.FirstError))
						aborted = true
						cancel()
						continue
					}
					if cfg.Scenario == ScenarioConnect {
						pr.after, pr.haveAfter = mon.sampleNow(ctx)
					}
					fmt.Fprintf(r.stderr, "%s: %d/%d connections established, %d refused%s, %d failed; load starts\n",
						label, pr.conns.Established, pr.conns.Target, pr.conns.Refused,
						byCode(pr.conns.RefusedByCode), pr.conns.Failed)
					writeCauses(r.stderr, label+": ", pr.conns.FailedByCause)
					if pr.conns.FirstError != "" {
						fmt.Fprintf(r.stderr, "%s: first connection failure: %s\n", label, pr.conns.FirstError)
					}
					rates := partRates(cfg, specs[:len(handles)], readyEst)
					for i, h := range handles {
						h.start(rates[i])
					}
					measured = time.After(measureFor)
				}
			case "tick":
				t := ev.m.Tick
				if t == nil || t.Hist == nil {
					continue
				}
				if bySec[t.Sec] == nil {
					bySec[t.Sec] = NewHistogram()
				}
				bySec[t.Sec].Merge(t.Hist)
				statusHist.Merge(t.Hist)
				recvBySec[t.Sec] += t.Received - lastRecv[ev.i]
				statusRecv += t.Received - lastRecv[ev.i]
				lastRecv[ev.i], lastSent[ev.i], lastErrs[ev.i] = t.Received, t.Sent, t.Errors
				// A status line once every part has reported the last second of an interval.
				partsAt[t.Sec]++
				every := max(1, int(cfg.Interval/time.Second))
				if partsAt[t.Sec] == len(handles) && (t.Sec+1)%every == 0 {
					var sent, errs uint64
					for i := range handles {
						sent += lastSent[i]
						errs += lastErrs[i]
					}
					fmt.Fprintf(r.stderr, "%s: %4ds  sent %d  recv %d  errors %d  %.0f msgs/s  p99 %.0f µs\n",
						label, t.Sec+1, sent, sumU(lastRecv), errs,
						float64(statusRecv)/float64(every), us(statusHist.Percentile(99)))
					statusHist.Reset()
					statusRecv = 0
				}
			case "result":
				results[ev.i] = ev.m.Result
			case "error":
				if !aborted {
					pr.failed = append(pr.failed, fmt.Sprintf("part %d: %s", ev.i, ev.m.Err))
				}
				cancel()
			}
		case <-measured:
			measured = nil
			if cfg.Scenario != ScenarioConnect {
				pr.after, pr.haveAfter = mon.sampleNow(ctx)
			}
		case now := <-progTick.C:
			if ready == len(handles) {
				continue
			}
			var sum progress
			for _, pg := range prog {
				sum.Established += pg.Established
				sum.Refused += pg.Refused
				sum.Failed += pg.Failed
			}
			rate := float64(sum.Established-lastProg.Established) / now.Sub(lastProgAt).Seconds()
			fmt.Fprintf(r.stderr, "%s: connecting %4.0fs  established %d/%d  %.0f conns/s  refused %d  failed %d\n",
				label, now.Sub(t0).Seconds(), sum.Established, cfg.Conns, rate, sum.Refused, sum.Failed)
			lastProg, lastProgAt = sum, now
		case <-readyBound.C:
			pr.failed = append(pr.failed, "connecting phase did not end in time")
			cancel()
		}
	}
	for i, h := range handles {
		if err := h.wait(); err != nil && !aborted {
			pr.failed = append(pr.failed, fmt.Sprintf("worker %d: %v", i, err))
		}
	}
	pr.conns.Target = cfg.Conns
	var conns connCounts
	conns.RefusedByCode = map[string]int{}
	var reconns []*reconnResult
	for i, res := range results {
		if res == nil {
			if len(pr.failed) == 0 {
				pr.failed = append(pr.failed, fmt.Sprintf("part %d ended without a result", i))
			}
			continue
		}
		conns.add(res.Conns)
		pr.sent += res.Sent
		pr.recv += res.Received
		pr.unanswered += res.Unanswered
		pr.connErrs += res.ConnErrors
		for k, v := range res.Errors {
			pr.errs[k] += v
		}
		pr.hist.Merge(res.Hist)
		pr.durationNs = max(pr.durationNs, res.DurationNs)
		if res.Probe != nil {
			pr.probe = res.Probe
		}
		reconns = append(reconns, res.Reconnect)
	}
	if cfg.Reconnect {
		pr.reconnect = mergeReconnect(reconns)
	}
	// Counts from the results replace those from "ready" only when every part sent one.
	if ready == len(handles) && len(results) > 0 && !slices.Contains(results, nil) {
		conns.Target = cfg.Conns
		pr.conns = conns
	}
	nsec := int(math.Ceil(measureFor.Seconds()))
	for s := 0; s < nsec; s++ {
		h := bySec[s]
		if h == nil {
			h = NewHistogram()
		}
		pr.series = append(pr.series, Point{Sec: s, Throughput: float64(recvBySec[s]),
			P50Us: us(h.Percentile(50)), P99Us: us(h.Percentile(99))})
	}
	return pr
}

// partRates splits the open-loop cfg.Rate over the parts in proportion to the
// connections each established (est), so that the run offers Rate messages/s in total
// over the connections it has, however many were refused or failed. Overload's spike
// connections are opened after go: there each part gets the share of its requested
// connections (spec.N), spread over those of its spike connections that are established,
// so only a part none of whose spike connections got through leaves its share unsent.
// All zero for the closed loop.
func partRates(cfg Config, specs []partSpec, est []int) []float64 {
	weight := func(i int) int {
		if cfg.Scenario == ScenarioOverload {
			return specs[i].N
		}
		return est[i]
	}
	total := 0
	for i := range specs {
		total += weight(i)
	}
	rates := make([]float64, len(specs))
	if cfg.Rate <= 0 || total == 0 {
		return rates
	}
	for i := range specs {
		rates[i] = cfg.Rate * float64(weight(i)) / float64(total)
	}
	return rates
}

// nothingListens is the error of a pass in which no connection was even refused.
func nothingListens(addrs []string, firstErr string) string {
	msg := "no connection to " + strings.Join(addrs, ",") + " could be established"
	if firstErr != "" {
		msg += " (" + firstErr + ")"
	}
	return msg + "; is a switchboard node listening there? (switchboard serve --listen ADDR)"
}

func sumU(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

// startFloor starts the bare echo server: a child process normally, in process in tests.
// stop ends it.
func (r *runner) startFloor(ctx context.Context) (addr string, stop func(), err error) {
	if r.inProcess {
		s, err := floor.Start("127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		return s.Addr().String(), func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Stop(sctx)
		}, nil
	}
	cmd := exec.Command(r.exe, append(append([]string{}, r.exeArgs...), "floor-server", "--listen", "127.0.0.1:0")...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stderr = r.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("bench: start floor server: %w", err)
	}
	stop = func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	lines := make(chan string, 1)
	go func() {
		// The first line that is a host:port is the address.
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			line = strings.TrimSpace(line)
			if _, _, perr := net.SplitHostPort(line); perr == nil {
				lines <- line
				break
			}
			if err != nil {
				lines <- ""
				return
			}
		}
		_, _ = io.Copy(io.Discard, br)
	}()
	select {
	case addr = <-lines:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if addr == "" {
		stop()
		return "", nil, errors.New("bench: floor server did not report its address")
	}
	return addr, stop, nil
}

// Run runs the whole invocation and returns its result. The error is non-nil when the
// run itself failed (nothing connected, a worker crashed); refusals are results.
func (r *runner) Run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	started := time.Now()
	var src sampler
	switch {
	case cfg.ServerPID > 0:
		src = procSampler{pid: cfg.ServerPID, root: "/proc"}
	case cfg.Admin != "":
		src = newAdminSampler(cfg.Admin)
	}
	ports := portCheck(cfg, r.procRoot())
	ports.write(r.stderr, cfg.Scenario)
	mon := startMonitor(ctx, src)
	cpu0 := loadGenCPU()
	m0, ok0 := readCPUTicks(r.procRoot())
	main := r.pass(ctx, cfg.Addrs, false, mon, cfg.Scenario)
	m1, ok1 := readCPUTicks(r.procRoot())
	cpu1 := loadGenCPU()
	mon.stop()

	res := &Result{Scenario: cfg.Scenario, StartedAt: started, Config: cfg.effective(),
		DurationS: float64(main.durationNs) / 1e9, Series: main.series, Ports: ports}
	res.Connections = ConnStats{Target: main.conns.Target, Established: main.conns.Established,
		Refused: main.conns.Refused, RefusedByCode: main.conns.RefusedByCode, Failed: main.conns.Failed,
		FailedByCause: main.conns.FailedByCause}
	if res.Connections.RefusedByCode == nil {
		res.Connections.RefusedByCode = map[string]int{}
	}
	if res.Connections.FailedByCause == nil {
		res.Connections.FailedByCause = map[string]int{}
	}
	res.Messages = MsgStats{Sent: main.sent, Received: main.recv, ErrorsByCode: main.errs,
		Unanswered: main.unanswered}
	if done := main.recv + sum(main.errs) + main.unanswered; main.sent+main.connErrs > done {
		res.Messages.Lost = main.sent + main.connErrs - done
	}
	if res.DurationS > 0 {
		res.Throughput = float64(main.recv) / res.DurationS
	}
	res.LatencyUs = latencyOf(main.hist)
	perConn := 0
	if cfg.Scenario == ScenarioConnect {
		// Connections are spread round-robin over the addresses and the figures come from
		// one server process: divide by that server's share.
		perConn = main.conns.Established / len(cfg.Addrs)
		cs := float64(main.conns.ConnectNs) / 1e9
		res.Connect = &ConnectStats{ConnectS: cs, FirstFailure: main.conns.FirstError,
			Ramp: rampSeries(main.conns.EstablishedBySec, main.conns.FailedBySec), RampTarget: cfg.Ramp}
		res.Connect.PeakRate = float64(peakRate(res.Connect.Ramp))
		if cs > 0 {
			res.Connect.AcceptRate = float64(main.conns.Established) / cs
		}
	}
	res.Server = mon.figures(main.after, main.haveAfter, perConn)
	res.LoadGen = LoadGenStats{CPUSeconds: cpu1 - cpu0}
	if main.recv > 0 {
		res.LoadGen.CPUPerMsgUs = res.LoadGen.CPUSeconds * 1e6 / float64(main.recv)
		if res.Server.CPUSeconds > 0 {
			res.Server.CPUPerMsgUs = res.Server.CPUSeconds * 1e6 / float64(main.recv)
		}
	}
	res.Machine = machineStats(m0, m1, ok0 && ok1)
	res.Overload = main.probe
	res.Reconnect = main.reconnect

	failed := main.failed
	if main.conns.Established == 0 && len(failed) == 0 {
		msg := "no connection could be established"
		if main.conns.FirstError != "" {
			msg += ": " + main.conns.FirstError
		}
		failed = append(failed, msg)
	}
	if cfg.Floor && len(failed) == 0 {
		addr, stop, err := r.startFloor(ctx)
		if err != nil {
			failed = append(failed, err.Error())
		} else {
			fl := r.pass(ctx, []string{addr}, true, startMonitor(ctx, nil), "floor")
			stop()
			failed = append(failed, fl.failed...)
			if fl.conns.Established == 0 && len(fl.failed) == 0 {
				failed = append(failed, "floor: no connection could be established: "+fl.conns.FirstError)
			}
			if fl.durationNs > 0 {
				res.Floor.Throughput = float64(fl.recv) / (float64(fl.durationNs) / 1e9)
			}
			if res.Floor.Throughput > 0 {
				res.Floor.Ratio = res.Throughput / res.Floor.Throughput
			}
			if fl.hist != nil && fl.hist.Count() > 0 {
				l := latencyOf(fl.hist)
				res.Floor.LatencyUs = &l
			}
		}
	}
	if len(failed) > 0 {
		res.Failed = strings.Join(failed, "; ")
		return res, errors.New(res.Failed)
	}
	return res, nil
}
