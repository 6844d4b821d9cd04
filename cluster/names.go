package cluster

import (
	"bufio"
	"encoding/json"
	"io"
	"strconv"
)

// NamesView is the shape of what WriteNames streams: this node's view of the directory.
// Tools decode it (bench failover's directory scan); the node never builds it whole.
type NamesView struct {
	NodeID uint16 `json:"node_id"`
	Epoch  uint64 `json:"epoch"` // this run of the node
	// Local are the names owned by this node's connections in this run: what Len counts.
	Local []LocalName `json:"local"`
	// Remote is the rest of the cache: names owned by other nodes (or by an earlier run of
	// this one, which the start-up sweep deletes), as the names watch last reported them.
	Remote []RemoteName `json:"remote"`
}

// LocalName is a name owned by a connection of this node.
type LocalName struct {
	Name string `json:"name"`
	Conn uint64 `json:"conn"` // the owner's connection id (client.Client.ConnID)
}

// RemoteName is a cache entry for a name this node does not own.
type RemoteName struct {
	Name  string `json:"name"`
	Node  uint16 `json:"node"`
	Epoch uint64 `json:"epoch"` // the owner node's run the entry was written by
	Conn  uint64 `json:"conn"`
	Live  bool   `json:"live"` // the owner's lease carries that epoch and no probe found it dead: Lookup serves it
}

// WriteNames writes this node's view of the directory to w as JSON (a NamesView): its
// own names, then its cache of the others'. It streams: the cache is read one partition
// at a time (a 64th of the names copied under that partition's read lock, which Lookup
// shares; only writers of that partition wait), and nothing else is held, so at 100K
// names it keeps ~1,600 entries at a time (BenchmarkWriteNames: ~73 ms for the whole
// view, the longest partition held ~0.24 ms, on 2 busy cores). It returns the first
// write error.
//
// The view is not a snapshot: names that change while it is written may appear in both
// lists, in neither, or with their old owner. A tool polls until two views agree. Names
// that are not valid UTF-8 come out with U+FFFD in place of the bad bytes (encoding/json).
// Safe for concurrent use.
func (n *Node) WriteNames(w io.Writer) error {
	d := n.dir
	bw := bufio.NewWriterSize(w, 32<<10)
	var err error
	put := func(b []byte) {
		if err == nil {
			_, err = bw.Write(b)
		}
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, `{"node_id":`...)
	buf = strconv.AppendUint(buf, uint64(n.cfg.NodeID), 10)
	buf = append(buf, `,"epoch":`...)
	buf = strconv.AppendUint(buf, d.epoch, 10)
	buf = append(buf, ",\n\"local\":["...)
	put(buf)
	self := func(e cached) bool { return e.node() == n.cfg.NodeID && e.epoch == d.epoch }
	sep := "\n"
	d.cache.each(func(name string, e cached) {
		if err != nil || !self(e) {
			return
		}
		buf = append(append(buf[:0], sep...), `{"name":`...)
		buf = appendJSONString(buf, name)
		buf = append(buf, `,"conn":`...)
		buf = strconv.AppendUint(buf, uint64(e.id), 10)
		buf = append(buf, '}')
		put(buf)
		sep = ",\n"
	})
	put([]byte("],\n\"remote\":["))
	sep = "\n"
	d.cache.each(func(name string, e cached) {
		if err != nil || self(e) {
			return
		}
		buf = append(append(buf[:0], sep...), `{"name":`...)
		buf = appendJSONString(buf, name)
		buf = append(buf, `,"node":`...)
		buf = strconv.AppendUint(buf, uint64(e.node()), 10)
		buf = append(buf, `,"epoch":`...)
		buf = strconv.AppendUint(buf, e.epoch, 10)
		buf = append(buf, `,"conn":`...)
		buf = strconv.AppendUint(buf, uint64(e.id), 10)
		buf = append(buf, `,"live":`...)
		buf = strconv.AppendBool(buf, d.leaseLive(e.node(), e.epoch))
		buf = append(buf, '}')
		put(buf)
		sep = ",\n"
	})
	put([]byte("]}\n"))
	if err == nil {
		err = bw.Flush()
	}
	return err
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}
