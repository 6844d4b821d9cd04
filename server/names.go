package server

import (
	"errors"
	"slices"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

func (lp *loop) register(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in REGISTER")
		return false
	}
	if slices.Index(c.names, string(name)) >= 0 { // no allocation: compiler-converted
		lp.ok(c, f.Corr)
		return true
	}
	if len(c.names) >= lp.srv.cfg.MaxNamesPerConn {
		lp.replyError(c, f.Corr, codec.CodeBusy, "too many names on this connection")
		return true
	}
	s := string(name)
	switch err := lp.srv.dir.Register(s, c.id); {
	case err == nil:
		c.names = append(c.names, s)
		lp.ok(c, f.Corr)
	case errors.Is(err, shard.ErrNameTaken):
		lp.replyError(c, f.Corr, codec.CodeNameTaken, "name owned by another connection")
	default:
		lp.replyError(c, f.Corr, codec.CodeInternal, err.Error())
	}
	return true
}

func (lp *loop) unregister(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in UNREGISTER")
		return false
	}
	i := slices.Index(c.names, string(name))
	if i < 0 {
		lp.replyError(c, f.Corr, codec.CodeNotOwner, "name not registered by this connection")
		return true
	}
	_ = lp.srv.dir.Unregister(c.names[i], c.id)
	c.names = slices.Delete(c.names, i, i+1)
	lp.ok(c, f.Corr)
	return true
}
