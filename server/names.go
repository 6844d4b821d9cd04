package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// pendingClaim is a REGISTER waiting for the directory's decision (Claim returned
// shard.ErrPending), kept in its loop's claims table until the outcome arrives.
type pendingClaim struct {
	name string
	corr uint32
}

// maxWaitingRegisters bounds the REGISTERs one connection may have waiting for claims
// decided elsewhere, repeats of a waiting name included: twice its name cap.
func maxWaitingRegisters(maxNames int) int { return 2 * maxNames }

func (lp *loop) register(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in REGISTER")
		return false
	}
	if slices.Index(c.registered(), string(name)) >= 0 { // no allocation: compiler-converted
		lp.ok(c, f.Corr)
		return true
	}
	var claims []pendingClaim
	if len(lp.claims) > 0 { // only a directory that decides elsewhere fills it
		claims = lp.claims[c.id]
		if i := slices.IndexFunc(claims, func(pc pendingClaim) bool { return pc.name == string(name) }); i >= 0 {
			// Already being claimed: this REGISTER gets the same answer when it comes. The
			// REGISTERs waiting on one connection, repeats included, are bounded: a client
			// repeating one at line rate while its claim is decided elsewhere (seconds, in
			// a cluster) would otherwise grow this list, and the burst of answers at its
			// outcome, without limit.
			if len(claims) >= maxWaitingRegisters(lp.srv.cfg.MaxNamesPerConn) {
				lp.replyError(c, f.Corr, codec.CodeBusy, "too many REGISTERs waiting on this connection")
				return true
			}
			lp.claims[c.id] = append(claims, pendingClaim{name: claims[i].name, corr: f.Corr})
			return true
		}
	}
	if len(c.registered())+len(claims) >= lp.srv.cfg.MaxNamesPerConn {
		lp.replyError(c, f.Corr, codec.CodeBusy, "too many names on this connection")
		return true
	}
	s := string(name)
	switch err := lp.srv.dir.Claim(s, c.id, lp.srv.claimFn); {
	case err == nil:
		c.addName(s)
		lp.ok(c, f.Corr)
	case errors.Is(err, shard.ErrPending):
		if lp.claims == nil {
			lp.claims = make(map[shard.ConnID][]pendingClaim)
		}
		lp.claims[c.id] = append(claims, pendingClaim{name: s, corr: f.Corr})
	default:
		code, reason := claimError(err)
		lp.replyClaimError(c, f.Corr, code, reason)
	}
	return true
}

// unavailableRetry is the retry-after of UNAVAILABLE: how long a client should wait before
// it registers again while the cluster directory cannot decide.
const unavailableRetry = time.Second

// replyClaimError answers a REGISTER that failed; UNAVAILABLE carries a retry-after.
func (lp *loop) replyClaimError(c *conn, corr uint32, code codec.ErrorCode, reason string) {
	if code != codec.CodeUnavailable || corr == 0 {
		lp.replyError(c, corr, code, reason)
		return
	}
	b := c.buf()
	b.B = codec.AppendError(b.B, corr, codec.ErrorBody{Code: code, RetryAfterMs: millis(unavailableRetry), Reason: reason})
	lp.stats.errors[code].Add(1)
}

// claimError maps a directory's refusal to the code and reason a client sees.
func claimError(err error) (codec.ErrorCode, string) {
	switch {
	case errors.Is(err, shard.ErrNameTaken):
		return codec.CodeNameTaken, "name owned by another connection"
	case errors.Is(err, shard.ErrBadName):
		return codec.CodeBadFrame, "bad name"
	case errors.Is(err, shard.ErrBusy):
		return codec.CodeBusy, "name directory busy; retry later"
	case errors.Is(err, shard.ErrUnavailable):
		return codec.CodeUnavailable, err.Error()
	}
	return codec.CodeInternal, err.Error()
}

// claimDone receives the outcome of a pending claim from the directory, on any goroutine,
// and hands it to the loop of the connection that asked. Bound once as Server.claimFn.
func (s *Server) claimDone(name string, id shard.ConnID, err error) {
	lp := s.loopAt(id.Loop())
	if lp == nil || id.Node() != s.cfg.NodeID {
		s.releaseClaim(name, id, err)
		return
	}
	bb := msgPool.Get()
	bb.B = append(bb.B[:0], name...)
	d := delivery{kind: dClaim, target: id, buf: bb, corr: uint32(len(name))}
	if err != nil {
		var reason string
		d.code, reason = claimError(err)
		if d.code == codec.CodeUnavailable { // why, after the name (finishClaim); the ERROR clips it
			bb.B = append(bb.B, reason...)
		}
	}
	if lp.push(d) {
		return
	}
	// The ring is full. The outcome must not be lost (the REGISTER would never be
	// answered and the directory would keep a name nobody serves), and outcomes are
	// bounded by the claims outstanding (MaxNamesPerConn per connection), so gnet's own
	// queue may carry this one.
	run := gnet.RunnableFunc(func(context.Context) error {
		lp.handleDelivery(&d)
		lp.flushDirty()
		return nil
	})
	if lp.el.Execute(s.baseCtx, run) != nil { // shutting down: nobody will serve it
		msgPool.Put(bb)
		s.releaseClaim(name, id, err)
	}
}

// releaseClaim gives back a name whose claim succeeded for a connection that can no
// longer be told.
func (s *Server) releaseClaim(name string, id shard.ConnID, err error) {
	if err == nil {
		_ = s.dir.Unregister(name, id)
	}
}

// finishClaim answers every REGISTER of name waiting on connection id with the outcome
// (code 0: owned); why is the directory's reason for UNAVAILABLE, if it gave one. On the
// loop.
func (lp *loop) finishClaim(id shard.ConnID, name []byte, code codec.ErrorCode, why []byte) {
	claims := lp.claims[id]
	c, ok := lp.conns.Get(id)
	if !ok || c.state != stateActive {
		delete(lp.claims, id)
		if code == 0 {
			_ = lp.srv.dir.Unregister(string(name), id)
		}
		return
	}
	owned := ""
	kept := claims[:0]
	for _, pc := range claims {
		if pc.name != string(name) {
			kept = append(kept, pc)
			continue
		}
		if code == 0 {
			owned = pc.name
			lp.ok(c, pc.corr)
		} else {
			_, reason := claimError(shard.ErrNameTaken)
			switch code {
			case codec.CodeNameTaken:
			case codec.CodeUnavailable:
				reason = "cluster directory unavailable (NATS unreachable or this node fenced); retry"
				if len(why) > 0 {
					reason = string(why)
				}
			default:
				reason = "directory failed to decide the claim"
			}
			lp.replyClaimError(c, pc.corr, code, reason)
		}
	}
	switch {
	case code == 0 && owned != "":
		c.addName(owned)
	case code == 0: // nobody asked for it (cannot happen): do not keep it
		_ = lp.srv.dir.Unregister(string(name), id)
	}
	clear(claims[len(kept):])
	if len(kept) == 0 {
		delete(lp.claims, id)
	} else {
		lp.claims[id] = kept
	}
}

func (lp *loop) unregister(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in UNREGISTER")
		return false
	}
	i := slices.Index(c.registered(), string(name))
	if i < 0 {
		reason := "name not registered by this connection"
		if slices.ContainsFunc(lp.claims[c.id], func(pc pendingClaim) bool { return pc.name == string(name) }) {
			reason = "registration of this name is still pending"
		}
		lp.replyError(c, f.Corr, codec.CodeNotOwner, reason)
		return true
	}
	_ = lp.srv.dir.Unregister((*c.names)[i], c.id)
	*c.names = slices.Delete(*c.names, i, i+1)
	lp.ok(c, f.Corr)
	return true
}
