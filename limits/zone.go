package limits

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Zone is the node's load level, from the worst of its utilisation inputs. Zones drive
// actions (see AcceptFactor and the Sheds/Refuses methods), metrics, /zone and alerts.
type Zone uint8

// Zones, in increasing order of load.
const (
	ZoneGreen Zone = iota
	ZoneYellow
	ZoneOrange
	ZoneRed
)

var zoneNames = [...]string{"GREEN", "YELLOW", "ORANGE", "RED"}

// String returns "GREEN", "YELLOW", "ORANGE" or "RED".
func (z Zone) String() string {
	if int(z) < len(zoneNames) {
		return zoneNames[z]
	}
	return fmt.Sprintf("Zone(%d)", uint8(z))
}

// MarshalText implements encoding.TextMarshaler: the zone's name.
func (z Zone) MarshalText() ([]byte, error) {
	if int(z) >= len(zoneNames) {
		return nil, fmt.Errorf("limits: invalid zone %d", uint8(z))
	}
	return []byte(zoneNames[z]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, accepting the names String returns.
func (z *Zone) UnmarshalText(text []byte) error {
	for i, n := range zoneNames {
		if string(text) == n {
			*z = Zone(i)
			return nil
		}
	}
	return fmt.Errorf("limits: unknown zone %q", text)
}

// AcceptFactor is the share of new work to accept in zone z: 1 in GREEN and YELLOW, 0.5 in
// ORANGE, 0 in RED. The server applies it to new connections (and, through
// ShedsLowPriority, to low-priority traffic).
func (z Zone) AcceptFactor() float64 {
	switch z {
	case ZoneGreen, ZoneYellow:
		return 1
	case ZoneOrange:
		return 0.5
	default:
		return 0
	}
}

// ShedsLowPriority reports whether low-priority traffic is refused: ORANGE and RED.
func (z Zone) ShedsLowPriority() bool { return z >= ZoneOrange }

// RefusesConnections reports whether new connections are refused with BUSY: RED.
func (z Zone) RefusesConnections() bool { return z >= ZoneRed }

// ShedsAllButControl reports whether everything but control frames is refused: RED. The
// server's control frames are HELLO, PING, REPLY and GOODBYE (server.controlFrame);
// UNREGISTER is shed like other work.
func (z Zone) ShedsAllButControl() bool { return z >= ZoneRed }

// Default zone settings.
const (
	DefaultZoneYellow     = 0.60
	DefaultZoneOrange     = 0.75
	DefaultZoneRed        = 0.90
	DefaultZoneHysteresis = 0.05
	DefaultZoneMinDwell   = 2 * time.Second
)

// Thresholds are a ZoneTracker's settings. A zone is entered as soon as the worst input
// reaches its threshold. It is left downwards only when the worst input is below the
// zone's threshold minus Hysteresis and the zone has been held for MinDwell; the tracker
// then drops straight to the zone the input (plus Hysteresis) belongs to. Hysteresis 0
// and MinDwell 0 mean none. The zero Thresholds means DefaultThresholds (so that a bare
// NewZoneTracker(Thresholds{}) works); any other value is used as given.
type Thresholds struct {
	Yellow     float64       `json:"yellow"`     // default 0.60
	Orange     float64       `json:"orange"`     // default 0.75
	Red        float64       `json:"red"`        // default 0.90
	Hysteresis float64       `json:"hysteresis"` // default 0.05; 0 = none
	MinDwell   time.Duration `json:"-"`          // default 2s; 0 = none; in ZoneSnapshot as seconds
}

// DefaultThresholds returns 0.60 / 0.75 / 0.90 with hysteresis 0.05 and a 2 s dwell.
func DefaultThresholds() Thresholds {
	return Thresholds{
		Yellow:     DefaultZoneYellow,
		Orange:     DefaultZoneOrange,
		Red:        DefaultZoneRed,
		Hysteresis: DefaultZoneHysteresis,
		MinDwell:   DefaultZoneMinDwell,
	}
}

// orDefault returns DefaultThresholds for the zero Thresholds and t itself otherwise.
func (t Thresholds) orDefault() Thresholds {
	if t == (Thresholds{}) {
		return DefaultThresholds()
	}
	return t
}

// level returns the zone whose threshold u reaches.
func (t *Thresholds) level(u float64) Zone {
	switch {
	case u >= t.Red:
		return ZoneRed
	case u >= t.Orange:
		return ZoneOrange
	case u >= t.Yellow:
		return ZoneYellow
	default:
		return ZoneGreen
	}
}

// Inputs are the utilisations a zone is computed from, each a ratio where 1 means "at the
// limit" (values above 1 are allowed). The caller computes them, for example:
// connections/max connections, queued messages/queue bound, heap/GOMEMLIMIT, window error
// rate/breaker threshold, loop lag/lag budget. NaN and negative values count as 0.
type Inputs struct {
	Connections float64 `json:"connections"`
	Queued      float64 `json:"queued"`
	Heap        float64 `json:"heap"`
	ErrorRate   float64 `json:"error_rate"`
	LoopLag     float64 `json:"loop_lag"`
}

var inputNames = [...]string{"connections", "queued", "heap", "error_rate", "loop_lag"}

// maxInput caps inputs so that snapshots stay JSON-encodable (no +Inf).
const maxInput = 1e9

func sanitize(v float64) float64 {
	if !(v > 0) { // NaN, zero, negative
		return 0
	}
	return min(v, maxInput)
}

// worst sanitises in and returns the index of its largest field and that value.
func (in *Inputs) worst() (int, float64) {
	vals := [...]*float64{&in.Connections, &in.Queued, &in.Heap, &in.ErrorRate, &in.LoopLag}
	wi, wv := 0, 0.0
	for i, p := range vals {
		*p = sanitize(*p)
		if *p > wv {
			wi, wv = i, *p
		}
	}
	return wi, wv
}

// ZoneSnapshot is the state of a ZoneTracker, shaped for the /zone endpoint.
type ZoneSnapshot struct {
	Zone               Zone       `json:"zone"`
	InZoneSeconds      float64    `json:"in_zone_seconds"`
	Worst              string     `json:"worst"` // name of the largest input, as in Inputs' JSON
	WorstValue         float64    `json:"worst_value"`
	Inputs             Inputs     `json:"inputs"`
	Thresholds         Thresholds `json:"thresholds"`
	MinDwellSeconds    float64    `json:"min_dwell_seconds"`
	Changes            uint64     `json:"changes"` // zone changes since start
	AcceptFactor       float64    `json:"accept_factor"`
	ShedsLowPriority   bool       `json:"sheds_low_priority"`
	RefusesConnections bool       `json:"refuses_connections"`
	ShedsAllButControl bool       `json:"sheds_all_but_control"`
}

// ZoneTracker computes the node's zone from periodic samples of its inputs, with
// hysteresis and a minimum dwell time so that the zone does not flap.
//
// Concurrency: Update is called by one goroutine (the sampler); calls must not overlap.
// Current is lock-free (one atomic load) and safe from any goroutine: it is the hot-path
// read. Snapshot is safe from any goroutine and takes a mutex that Update also takes to
// publish its inputs; the sampler is not an event loop, so that lock never blocks a loop.
type ZoneTracker struct {
	zone atomic.Uint32 // atomic; the current Zone, written by Update under mu
	th   Thresholds    // immutable after NewZoneTracker

	mu        sync.Mutex
	in        Inputs // guarded by mu; the latest sanitised inputs
	worst     int    // guarded by mu; index of the worst input
	enteredAt int64  // guarded by mu; when the current zone was entered, ns
	started   bool   // guarded by mu; Update has run
	changes   uint64 // guarded by mu
}

// NewZoneTracker returns a tracker in GREEN. The zero Thresholds means
// DefaultThresholds; any other th is used as given (limits.Config.Validate checks it).
func NewZoneTracker(th Thresholds) *ZoneTracker {
	return &ZoneTracker{th: th.orDefault()}
}

// Thresholds returns the effective settings.
func (t *ZoneTracker) Thresholds() Thresholds { return t.th }

// Current returns the current zone. Lock-free; safe from any goroutine.
func (t *ZoneTracker) Current() Zone { return Zone(t.zone.Load()) }

// Update takes a sample of the inputs at now (monotonic nanoseconds) and returns the zone
// and whether it changed. The zone rises at once to the level of the worst input; it falls
// only once the worst input is below the current zone's threshold minus the hysteresis and
// the current zone has been held for MinDwell, and then to the level of worst+hysteresis
// (it may skip zones). Called by one goroutine. Does not allocate.
func (t *ZoneTracker) Update(now int64, in Inputs) (z Zone, changed bool) {
	wi, u := in.worst()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in, t.worst = in, wi
	if !t.started {
		t.started, t.enteredAt = true, now
	}
	cur := Zone(t.zone.Load())
	next := cur
	if up := t.th.level(u); up > cur {
		next = up
	} else if down := t.th.level(u + t.th.Hysteresis); down < cur && now-t.enteredAt >= int64(t.th.MinDwell) {
		next = down
	}
	if next == cur {
		return cur, false
	}
	t.zone.Store(uint32(next))
	t.enteredAt = now
	t.changes++
	return next, true
}

// Snapshot returns the tracker's state at now. Safe from any goroutine; takes the mutex.
func (t *ZoneTracker) Snapshot(now int64) ZoneSnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	z := Zone(t.zone.Load())
	s := ZoneSnapshot{
		Zone:               z,
		Worst:              inputNames[t.worst],
		Inputs:             t.in,
		Thresholds:         t.th,
		MinDwellSeconds:    t.th.MinDwell.Seconds(),
		Changes:            t.changes,
		AcceptFactor:       z.AcceptFactor(),
		ShedsLowPriority:   z.ShedsLowPriority(),
		RefusesConnections: z.RefusesConnections(),
		ShedsAllButControl: z.ShedsAllButControl(),
	}
	_, s.WorstValue = s.Inputs.worst()
	if t.started && now > t.enteredAt {
		s.InZoneSeconds = time.Duration(now - t.enteredAt).Seconds()
	}
	return s
}
