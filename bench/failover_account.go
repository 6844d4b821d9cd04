package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/codec"
)

// Message kinds of the failover scenario.
const (
	foSend    = 1 // SEND+ACK
	foRequest = 2 // REQUEST/REPLY
)

// Outcomes of one call, as the sender saw it.
const (
	outcomeNone    = 0 // no answer yet, or none at all (timeout, disconnect)
	outcomeOK      = 1 // OK (SEND+ACK) or a REPLY carrying the request's own id (REQUEST)
	outcomeRefused = 2 // an ERROR frame: code holds its code
	outcomeLost    = 3 // the call ended without an answer: cause holds why
	outcomeWrong   = 4 // a REPLY carrying another request's id
)

// failoverPayloadMin is the smallest payload: id (8) | sender (4) | kind (1).
const failoverPayloadMin = 13

// msgRec is one message of a failover run. The pacer fills it before the message is
// sent, the sending goroutine owns the outcome, receivers only add deliveries; tally
// reads it once every sending goroutine has returned.
type msgRec struct {
	from int32 // sender client index
	kind uint8

	// Receivers read these two, so they are atomic (a socket is no happens-before edge
	// the race detector knows).
	sentNs atomic.Int64 // intended send time, ns since the run's t0
	to     atomic.Int32 // receiver client index

	outcome    atomic.Uint32 // outcome*
	code       atomic.Uint32 // outcomeRefused: the ERROR code
	cause      atomic.Uint32 // outcomeLost: a noOutcome* cause
	outcomes   atomic.Int32  // outcomes recorded: more than one is a violation
	deliveries atomic.Int32  // MESSAGE/INCOMING frames carrying this id that arrived
	misrouted  atomic.Int32  // of those, arrived at another client than to
}

// Causes of a call that ended without an outcome.
const (
	noOutcomeTimeout      = 0
	noOutcomeDisconnected = 1
	noOutcomeClosed       = 2
	noOutcomeOther        = 3
)

var noOutcomeNames = [...]string{"timeout", "disconnected", "closed", "other"}

// record stores the outcome of the call that sent r, from its error (nil: answered OK).
func (r *msgRec) record(err error) {
	r.outcomes.Add(1)
	var se *client.ServerError
	switch {
	case err == nil:
		r.outcome.Store(outcomeOK)
	case errors.As(err, &se):
		r.code.Store(uint32(se.Code))
		r.outcome.Store(outcomeRefused)
	default:
		// The client's own deadline for a REQUEST wraps ErrTimeout, the TIMEOUT code's
		// sentinel, but no ServerError: nothing came back, so it is no outcome.
		cause := uint32(noOutcomeOther)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			cause = noOutcomeTimeout
		case errors.Is(err, client.ErrDisconnected):
			cause = noOutcomeDisconnected
		case errors.Is(err, client.ErrClosed):
			cause = noOutcomeClosed
		}
		r.cause.Store(cause)
		r.outcome.Store(outcomeLost)
	}
}

// appendFailoverPayload writes message id's payload, size bytes (at least
// failoverPayloadMin), into dst.
func appendFailoverPayload(dst []byte, id uint64, from int32, kind uint8, size int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(from))
	dst = append(dst, kind)
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseFailoverPayload returns the id, sender and kind a payload carries.
func parseFailoverPayload(p []byte) (id uint64, from int32, kind uint8, ok bool) {
	if len(p) < failoverPayloadMin {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint64(p), int32(binary.BigEndian.Uint32(p[8:])), p[12], true
}

// SendAccount is the SEND+ACK accounting of a failover run: Sent = OK + Σ Refused +
// Σ NoOutcome. The receivers' side counts MESSAGE frames by the unique id in the payload.
type SendAccount struct {
	Sent      int            `json:"sent"`
	OK        int            `json:"ok"`
	Refused   map[string]int `json:"refused"`    // by ERROR code
	NoOutcome map[string]int `json:"no_outcome"` // by cause: timeout, disconnected, closed, other
	Delivered int            `json:"delivered"`  // ids that arrived at least once
	// Duplicates are arrivals beyond the first of one id.
	Duplicates int `json:"duplicates"`
	// AckedNotDelivered were acknowledged (OK) and never arrived: lost messages.
	AckedNotDelivered int `json:"acked_not_delivered"`
	// AckedLostWithTarget were acknowledged by the signalled node for one of its own
	// connections and never arrived: the target's connection went away with its node
	// before the MESSAGE reached it, which docs/PROTOCOL.md (4.5: OK means queued on the
	// server for the target) allows. Not a violation; counted apart from AckedNotDelivered.
	AckedLostWithTarget int `json:"acked_lost_with_target"`
	// DeliveredWithoutOK arrived although their sender got no OK: no outcome (the answer
	// was lost with a connection, or came too late) or a refusal (RefusedButDelivered).
	DeliveredWithoutOK  int `json:"delivered_without_ok"`
	RefusedButDelivered int `json:"refused_but_delivered"`
	Misrouted           int `json:"misrouted"` // arrived at another client than the addressee
	TwoOutcomes         int `json:"two_outcomes"`
}

// RequestAccount is the REQUEST/REPLY accounting: Sent = Answered + Σ Refused + Σ
// NoOutcome (+ WrongAnswer). Delivered counts requests that reached their responder.
type RequestAccount struct {
	Sent       int            `json:"sent"`
	Answered   int            `json:"answered"`
	Refused    map[string]int `json:"refused"`
	NoOutcome  map[string]int `json:"no_outcome"`
	Delivered  int            `json:"delivered"`
	Duplicates int            `json:"duplicates"`
	// TwoOutcomes counts requests whose sender got more than one outcome. The Go client
	// returns one per call (a late REPLY is dropped), so this checks the bench itself;
	// WrongAnswer (a REPLY carrying another request's id) is the wire-level check.
	TwoOutcomes int `json:"two_outcomes"`
	WrongAnswer int `json:"wrong_answer"`
	Misrouted   int `json:"misrouted"`
}

// tally adds up recs. Records still without an outcome count as NoOutcome "pending".
// withTarget, if not nil, reports whether an acknowledged SEND that never arrived went to a
// connection of the signalled node before its client was connected elsewhere
// (AckedLostWithTarget).
func tally(recs []msgRec, withTarget func(*msgRec) bool) (SendAccount, RequestAccount) {
	s := SendAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}
	q := RequestAccount{Refused: map[string]int{}, NoOutcome: map[string]int{}}
	for i := range recs {
		r := &recs[i]
		out, d := r.outcome.Load(), int(r.deliveries.Load())
		var refused, noOutcome map[string]int
		switch r.kind {
		case foSend:
			s.Sent++
			refused, noOutcome = s.Refused, s.NoOutcome
			s.Duplicates += max(0, d-1)
			s.Misrouted += int(r.misrouted.Load())
			s.TwoOutcomes += int(min(1, max(0, r.outcomes.Load()-1)))
			if d > 0 {
				s.Delivered++
			}
			switch {
			case out == outcomeOK && d == 0 && withTarget != nil && withTarget(r):
				s.AckedLostWithTarget++
			case out == outcomeOK && d == 0:
				s.AckedNotDelivered++
			case out != outcomeOK && d > 0:
				s.DeliveredWithoutOK++
				if out == outcomeRefused {
					s.RefusedButDelivered++
				}
			}
			if out == outcomeOK {
				s.OK++
			}
		case foRequest:
			q.Sent++
			refused, noOutcome = q.Refused, q.NoOutcome
			q.Duplicates += max(0, d-1)
			q.Misrouted += int(r.misrouted.Load())
			q.TwoOutcomes += int(min(1, max(0, r.outcomes.Load()-1)))
			if d > 0 {
				q.Delivered++
			}
			switch out {
			case outcomeOK:
				q.Answered++
			case outcomeWrong:
				q.WrongAnswer++
			}
		default:
			continue
		}
		switch out {
		case outcomeRefused:
			refused[codeName(r.code.Load())]++
		case outcomeLost:
			noOutcome[noOutcomeNames[r.cause.Load()]]++
		case outcomeNone:
			noOutcome["pending"]++
		}
	}
	return s, q
}

// Durations summarises a sample of durations.
type Durations struct {
	N      int     `json:"n"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	Missed int     `json:"missing"` // members of the set that never got a value
}

// summarize returns the p50, p99 and max of ds (nearest rank) and missed as Missed.
func summarize(ds []time.Duration, missed int) Durations {
	out := Durations{N: len(ds), Missed: missed}
	if len(ds) == 0 {
		return out
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	out.P50Ms, out.P99Ms, out.MaxMs = ms(rank(0.50)), ms(rank(0.99)), ms(s[len(s)-1])
	return out
}

func codeName(c uint32) string { return codec.ErrorCode(c).String() }
