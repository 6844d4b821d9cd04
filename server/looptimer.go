package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loopTimer queues a task on its loop once, a given time after it is armed. Arming it
// while it is set does nothing, so a loop may arm it every round without resetting a
// time.Timer (whose Reset takes a lock) each time. fire runs on the timer's goroutine and
// only queues the task; the task runs on the loop. Used for held output (write coalescing)
// and for a wave's handshake-timeout closes (hsclose.go).
type loopTimer struct {
	t     *time.Timer
	armed atomic.Bool // set by arm, cleared by fire (off the loop)
	lp    *loop
	run   gnet.Runnable
}

// init makes lt run task on lp's loop when it fires; lt starts stopped.
func (lt *loopTimer) init(lp *loop, task func()) {
	lt.lp = lp
	lt.run = gnet.RunnableFunc(func(context.Context) error { task(); return nil })
	lt.t = time.AfterFunc(time.Hour, lt.fire)
	lt.t.Stop()
}

// arm sets lt to fire after d unless it is set already. On the loop.
func (lt *loopTimer) arm(d time.Duration) {
	if lt.armed.CompareAndSwap(false, true) {
		lt.t.Reset(d)
	}
}

// fire queues the task on the loop.
func (lt *loopTimer) fire() {
	lt.armed.Store(false)
	_ = lt.lp.el.Execute(context.Background(), lt.run) // an error: the engine stopped
}

// stop stops lt (the engine is stopping).
func (lt *loopTimer) stop() { lt.t.Stop() }
