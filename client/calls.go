package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// requestGrace is how long past its timeout_ms a Request waits for the server's TIMEOUT
// before giving up locally; it covers the network and a busy server.
const requestGrace = time.Second

// bound limits ctx to RequestTimeout unless it has an earlier deadline.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, c.errNoAnswer)
}

func checkName(name string) error {
	if len(name) == 0 || len(name) > codec.MaxNameLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadName, len(name), codec.MaxNameLen)
	}
	return nil
}

// call sends one frame built by build (given the call's correlation id) and waits for its
// outcome. It returns the connection used. A frame refused by a closing connection was not
// sent, so it is retried on the next one.
func (c *Client) call(ctx context.Context, want codec.Type, build func(b []byte, corr uint32) []byte) (*conn, result, error) {
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return nil, result{}, err
		}
		corr, cl, ok := cn.addPending(want)
		if !ok {
			continue // closed after waitConn; it is no longer offered
		}
		err = cn.send(ctx, true, func(b []byte) []byte { return build(b, corr) })
		if err != nil {
			cn.forget(corr)
			if errors.Is(err, errNotSent) {
				continue
			}
			return nil, result{}, err
		}
		res, err := cn.await(ctx, corr, cl)
		return cn, res, err
	}
}

// Register claims name for this client: SEND and REQUEST to name reach it. The name is kept
// and registered again after every reconnect. A connection lost before the answer is not an
// error: Register retries on the next connection. It fails with ErrNameTaken if another
// connection owns name. Safe for concurrent use.
func (c *Client) Register(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	for {
		cn, _, err := c.call(ctx, codec.TypeOK, func(b []byte, corr uint32) []byte {
			return codec.AppendName(b, codec.TypeRegister, corr, name)
		})
		if errors.Is(err, ErrDisconnected) {
			continue
		}
		if err != nil {
			return err
		}
		// install snapshots the names when it installs a connection. If one was installed
		// after cn, its snapshot may lack name: register there too.
		c.mu.Lock()
		c.names[name] = struct{}{}
		again := c.cur != cn
		c.mu.Unlock()
		if !again {
			return nil
		}
	}
}

// Unregister releases name and stops re-registering it. If name was registered by this
// client, a NOT_OWNER answer or a lost connection (both mean the name is no longer ours)
// count as success; otherwise NOT_OWNER is returned as ErrNotOwner. Safe for concurrent
// use.
func (c *Client) Unregister(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	c.mu.Lock()
	_, ours := c.names[name]
	delete(c.names, name)
	c.mu.Unlock()
	_, _, err := c.call(ctx, codec.TypeOK, func(b []byte, corr uint32) []byte {
		return codec.AppendName(b, codec.TypeUnregister, corr, name)
	})
	if err != nil && ours && (errors.Is(err, ErrNotOwner) || errors.Is(err, ErrDisconnected)) {
		return nil
	}
	return err
}

// Send sends payload to the client that registered name, without waiting for an outcome
// (fire-and-forget). A nil error means the frame was queued for writing; delivery failures
// are not reported. It waits while reconnecting or while the write buffer is full. Safe for
// concurrent use.
func (c *Client) Send(ctx context.Context, name string, payload []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return err
		}
		err = cn.send(ctx, true, func(b []byte) []byte {
			return codec.AppendSend(b, 0, 0, name, payload)
		})
		if !errors.Is(err, errNotSent) {
			return err
		}
	}
}

// SendAck sends payload to the client that registered name and waits until the server has
// queued it to that client (OK) or refused it (a *ServerError: ErrNoRoute, ErrQueueFull,
// ErrRateLimited...). Safe for concurrent use.
func (c *Client) SendAck(ctx context.Context, name string, payload []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	_, _, err := c.call(ctx, codec.TypeOK, func(b []byte, corr uint32) []byte {
		return codec.AppendSend(b, codec.FlagAck, corr, name, payload)
	})
	return err
}

// Request sends payload to the client that registered name and returns its reply. The
// server is given RequestTimeout, or less if ctx ends sooner, as the request's timeout and
// answers ErrTimeout when the target does not reply in time. Other failures are a
// *ServerError (ErrNoRoute, ErrQueueFull...), ctx's error, ErrDisconnected or ErrClosed.
// The returned slice is owned by the caller. Safe for concurrent use.
func (c *Client) Request(ctx context.Context, name string, payload []byte) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// The server owns the timeout; waiting a little longer lets its TIMEOUT arrive.
	ctx, cancel := context.WithDeadlineCause(ctx, deadline.Add(requestGrace), c.errNoAnswer)
	defer cancel()
	_, res, err := c.call(ctx, codec.TypeResponse, func(b []byte, corr uint32) []byte {
		return codec.AppendRequest(b, corr, name, millis(time.Until(deadline)), payload)
	})
	if err != nil {
		return nil, err
	}
	return res.body, nil
}

// millis converts d to whole milliseconds for the wire, rounding up, at least 1.
func millis(d time.Duration) uint32 {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	switch {
	case ms < 1:
		return 1
	case ms > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(ms)
}

// Echo sends payload to the server and returns what it echoes back (a copy owned by the
// caller). Safe for concurrent use.
func (c *Client) Echo(ctx context.Context, payload []byte) ([]byte, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	_, res, err := c.call(ctx, codec.TypeEchoReply, func(b []byte, corr uint32) []byte {
		return codec.AppendFrame(b, codec.TypeEcho, 0, corr, payload)
	})
	if err != nil {
		return nil, err
	}
	return res.body, nil
}

// Ping measures the round trip of a PING to the server, including any wait for a
// connection. Safe for concurrent use.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	start := time.Now()
	_, _, err := c.call(ctx, codec.TypePong, func(b []byte, corr uint32) []byte {
		return codec.AppendFrame(b, codec.TypePing, 0, corr, nil)
	})
	if err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
