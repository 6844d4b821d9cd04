package server

import (
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// ReloadableKeys are the settings ReloadLimits applies to a running server; every other
// setting needs a restart (switchboard serve re-reads them on SIGHUP and says which).
var ReloadableKeys = []string{
	"conn-msg-rate", "conn-msg-burst", "conn-byte-rate", "conn-byte-burst",
	"node-msg-rate", "node-msg-burst", "accept-rate", "accept-burst",
	"max-conns-per-ip", "max-queue", "max-queue-bytes",
}

// ReloadLimits applies the rate limits, connection caps and queue bound of next (the
// ReloadableKeys) to the running server: new connections at once and every open one
// within its loop's next turn (their buckets start full). Breaker and zone settings keep
// their start-up values. Safe for concurrent use.
func (s *Server) ReloadLimits(next Config) error {
	next.EnsureDefaults()
	if err := next.Validate(); err != nil {
		return err
	}
	g := &s.g
	g.rates.Store(&rateLimits{cfg: next.Config, maxQueue: next.MaxQueue, maxQueueBytes: next.MaxQueueBytes})
	g.perIP.SetMax(next.MaxConnsPerIP)
	ab := next.AcceptLimiter()
	g.acceptNext.Store(&ab)
	var node *limits.SharedRate
	if next.NodeMsgRate > 0 {
		node = next.NodeLimiter(s.cfg.Loops)
	}
	g.node.Store(node)
	g.rated.Store(next.ConnMsgRate > 0 || next.ConnByteRate > 0 || next.NodeMsgRate > 0)
	s.onEachLoop(func(lp *loop) {
		lp.setLease(node)
		lp.conns.Range(func(_ shard.ConnID, c *conn) bool {
			c.lim = s.newConnLimits()
			return true
		})
	})
	s.log.Info("limits reloaded", "conn_msg_rate", next.ConnMsgRate, "conn_byte_rate", next.ConnByteRate,
		"node_msg_rate", next.NodeMsgRate, "accept_rate", next.AcceptRate,
		"max_conns_per_ip", next.MaxConnsPerIP, "max_queue", next.MaxQueue,
		"max_queue_bytes", next.MaxQueueBytes)
	return nil
}
