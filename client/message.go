package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/switchboard/switchboard/codec"
)

// Message is a one-way message delivered to Config.OnMessage. Its fields are owned by the
// callee.
type Message struct {
	FromConn uint64 // connection id of the sender
	From     string // sender's client name (its HELLO name); may be empty
	Payload  []byte // a fresh copy, owned by the callee
}

// Request is a request delivered to Config.OnRequest. Answer it with Reply, once, from any
// goroutine. Its fields are owned by the callee.
type Request struct {
	FromConn uint64 // connection id of the sender
	From     string // sender's client name; may be empty
	Payload  []byte // a fresh copy, owned by the callee

	token   uint64 // the server's reply token
	cn      *conn  // the connection the request arrived on; the token is only valid there
	replied atomic.Bool
}

// Reply sends payload as the response to r. It does not wait for the server. It returns
// ErrReplied if r was already answered, an error matching ErrDisconnected if the connection
// the request came on is gone (the sender gets TIMEOUT or a disconnect), and an error
// matching ErrFrameTooLarge if payload exceeds the server's maximum frame. Reply is safe for
// concurrent use and never blocks on a slow connection.
func (r *Request) Reply(payload []byte) error {
	if r.replied.Swap(true) {
		return ErrReplied
	}
	err := r.cn.send(context.Background(), false, func(b []byte) []byte {
		return codec.AppendReply(b, 0, r.token, payload)
	})
	switch {
	case err == nil:
		r.cn.replied()
		return nil
	case errors.Is(err, errNotSent):
		return fmt.Errorf("%w: the request's connection is gone", ErrDisconnected)
	default:
		r.replied.Store(false) // nothing was sent; a smaller reply may follow
		return err
	}
}
