package client

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

func TestServerError(t *testing.T) {
	tests := []struct {
		code     codec.ErrorCode
		reason   string
		sentinel error
		text     string
	}{
		{codec.CodeNoRoute, "", ErrNoRoute, "switchboard: NO_ROUTE"},
		{codec.CodeQueueFull, "target busy", ErrQueueFull, "switchboard: QUEUE_FULL: target busy"},
		{codec.CodeTimeout, "", ErrTimeout, "switchboard: TIMEOUT"},
		{codec.CodeNotOwner, "", ErrNotOwner, "switchboard: NOT_OWNER"},
		{codec.ErrorCode(999), "x", nil, "switchboard: CODE_999: x"},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			var err error = &ServerError{Code: tt.code, Reason: tt.reason}
			if got := err.Error(); got != tt.text {
				t.Errorf("Error() = %q; want %q", got, tt.text)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			if errors.Is(err, ErrBusy) {
				t.Errorf("errors.Is(%v, ErrBusy) = true", err)
			}
		})
	}
	// A call's TIMEOUT ran out of its time, as client/doc.go promises; the idle timeout
	// that closes a connection did not, nor does any other code.
	if err := error(&ServerError{Code: codec.CodeTimeout}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call's TIMEOUT does not match context.DeadlineExceeded")
	}
	closing := &ServerError{Code: codec.CodeTimeout, Flags: codec.ErrFlagClosing | codec.ErrFlagReconnect}
	if errors.Is(closing, context.DeadlineExceeded) || errors.Is(&ServerError{Code: codec.CodeNoRoute}, context.DeadlineExceeded) {
		t.Errorf("the idle timeout's close, or NO_ROUTE, matches context.DeadlineExceeded")
	}
	// Every code has its own sentinel.
	seen := map[error]bool{}
	for code := codec.ErrorCode(1); code <= codec.MaxCode; code++ {
		s := codeErrs[code]
		if s == nil || seen[s] {
			t.Errorf("code %v: sentinel %v missing or shared", code, s)
		}
		seen[s] = true
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"defaults", DefaultConfig(), true},
		{"negative dial timeout", Config{DialTimeout: -1}, false},
		{"min above max", Config{ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, false},
		{"tiny max frame", Config{MaxFrame: 3}, false},
		{"long name", Config{Name: string(make([]byte, 256))}, false},
		{"long token", Config{Token: string(make([]byte, 256))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v; want ok=%v", err, tt.ok)
			}
		})
	}
	err := Config{DialTimeout: -1, RequestTimeout: -1}.Validate()
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 2 {
		t.Errorf("Validate reported %d problems; want 2: %v", n, err)
	}
	d := DefaultConfig()
	if d.RequestTimeout != 5*time.Second || d.ReconnectMin != 100*time.Millisecond ||
		d.ReconnectMax != 5*time.Second || d.MaxFrame != 0 || d.Logger == nil { // MaxFrame 0: the server's
		t.Errorf("DefaultConfig() = %+v", d)
	}
}

// TestPickerScatter: clients of a node that died without a word (no GOAWAY, no ERROR)
// spread over the other configured addresses instead of all taking the next one, and
// none tries the dead one first.
func TestPickerScatter(t *testing.T) {
	addrs := []string{"a", "b", "c", "d", "e", "f"}
	firsts := map[string]int{}
	for range 600 {
		p := newPicker(addrs, 0)
		p.connected("f")
		p.note(&conn{addr: "f"}, time.Now())
		a, _ := p.next(time.Now())
		firsts[a]++
	}
	if firsts["f"] != 0 {
		t.Errorf("the lost address was tried first %d times", firsts["f"])
	}
	for _, a := range addrs[:5] {
		if firsts[a] == 0 { // each is chosen with p = 1/5: never in 600 tries is ~1e-58
			t.Errorf("no client went to %s first: %v", a, firsts)
		}
	}
}

func TestPicker(t *testing.T) {
	now := time.Now()
	p := newPicker([]string{"a", "b", "c"}, 0)
	var got []string
	for range 4 {
		a, nb := p.next(now)
		if !nb.IsZero() {
			t.Errorf("next(%s) waits until %v; want now", a, nb)
		}
		got = append(got, a)
	}
	if want := "b c a b"; join(got) != want {
		t.Errorf("rotation = %s; want %s", join(got), want)
	}

	// GOAWAY from b: avoid b, try the suggested x first.
	p.note(&conn{addr: "b", goaway: &codec.GoAway{ReconnectAfterMs: 1000, Addrs: []string{"x"}}}, now)
	got = got[:0]
	for range 4 {
		a, _ := p.next(now)
		got = append(got, a)
	}
	if want := "x c a c"; join(got) != want {
		t.Errorf("after GOAWAY = %s; want %s", join(got), want)
	}

	// Everything blocked: the earliest one, with its time.
	p.noteError("a", &ServerError{RetryAfter: 3 * time.Second}, now)
	p.noteError("c", &ServerError{RetryAfter: 2 * time.Second}, now)
	a, nb := p.next(now)
	if a != "b" || !nb.Equal(now.Add(time.Second)) {
		t.Errorf("all blocked: next = %s at %v; want b at now+1s", a, nb.Sub(now))
	}
	// Once the time has passed, b is free again.
	if a, nb := p.next(now.Add(1500 * time.Millisecond)); a != "b" || !nb.IsZero() {
		t.Errorf("after 1.5s: next = %s at %v; want b now", a, nb)
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestMillis(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want uint32
	}{
		{-time.Second, 1}, {0, 1}, {time.Microsecond, 1}, {time.Millisecond, 1},
		{1500 * time.Microsecond, 2}, {5 * time.Second, 5000}, {1 << 62, 1<<32 - 1},
	}
	for _, tt := range tests {
		if got := millis(tt.d); got != tt.want {
			t.Errorf("millis(%v) = %d; want %d", tt.d, got, tt.want)
		}
	}
}

// TestSpread: the address a GOAWAY suggests first is spread over the listed ones, weighted
// by rank (the server lists the least loaded first), and the others keep their order.
func TestSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := []string{"a", "b", "c", "d", "e"}
	const tries = 30_000
	firsts := map[string]int{}
	for range tries {
		got := spread(slices.Clone(addrs), r)
		firsts[got[0]]++
		rest := slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == got[0] })
		if !slices.Equal(got[1:], rest) {
			t.Fatalf("spread(%v) = %v: the others must keep their order", addrs, got)
		}
	}
	// Weights 5:4:3:2:1 of 15; allow 3 points either way on 30,000 tries.
	for i, a := range addrs {
		want := float64(len(addrs)-i) / 15
		if got := float64(firsts[a]) / tries; got < want-0.03 || got > want+0.03 {
			t.Errorf("%s first in %.3f of tries, want ~%.3f", a, got, want)
		}
	}
	for _, in := range [][]string{nil, {"only"}} {
		if got := spread(slices.Clone(in), r); !slices.Equal(got, in) {
			t.Errorf("spread(%v) = %v", in, got)
		}
	}
}

// TestPickerSpreadsGoAway: clients of a draining node told the same peer list do not all
// go to its first entry.
func TestPickerSpreadsGoAway(t *testing.T) {
	firsts := map[string]int{}
	for range 200 {
		p := newPicker([]string{"self"}, 0)
		p.suggest([]string{"n1", "n2", "n3"})
		a, _ := p.next(time.Now())
		firsts[a]++
	}
	if len(firsts) != 3 {
		t.Fatalf("200 clients went to %v; want all three suggested nodes used", firsts)
	}
}
