package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// namesView is one node's GET /cluster/names (cluster.NamesView; decoded here so that
// bench does not import cluster).
type namesView struct {
	NodeID uint16 `json:"node_id"`
	Epoch  uint64 `json:"epoch"`
	Local  []struct {
		Name string `json:"name"`
		Conn uint64 `json:"conn"`
	} `json:"local"`
	Remote []struct {
		Name  string `json:"name"`
		Node  uint16 `json:"node"`
		Epoch uint64 `json:"epoch"`
		Conn  uint64 `json:"conn"`
		Live  bool   `json:"live"`
	} `json:"remote"`
}

// scanClient is where one bench client is connected now and the name it holds.
type scanClient struct {
	Name string
	View int    // index of the view of the node it is connected to; -1: not connected to a scanned node
	Conn uint64 // its connection id there
}

// ScanResult is the directory scan after recovery: every live node's view compared.
type ScanResult struct {
	Nodes      []uint16 `json:"nodes"` // node ids scanned
	Names      int      `json:"names"` // distinct names seen
	Rounds     int      `json:"rounds"`
	Consistent bool     `json:"consistent"`
	// TwoOwners: names local to more than one node. A violation.
	TwoOwners int `json:"two_owners"`
	// CacheDisagrees: a node's cache entry that is not what the owner node holds (another
	// node, epoch or connection, or the name missing from the owner's local table), or a
	// name local on one node and missing from another's cache.
	CacheDisagrees int `json:"cache_disagrees"`
	// Dangling: cache entries, still live, whose owner node is not among the scanned ones
	// (the victim).
	Dangling int `json:"dangling"`
	// Orphaned: cache entries of a node not scanned that the caching node knows is gone
	// (live false): names whose clients never came back (e.g. bench connect's, which do
	// not reconnect). Nobody serves them (senders get NO_ROUTE) and a REGISTER takes them
	// over; counted, not an inconsistency.
	Orphaned int `json:"orphaned"`
	// ClientNotLocal: a bench client's name not local, with its connection id, on the node
	// it is connected to (clients not connected to a scanned node are not checked).
	ClientNotLocal int      `json:"client_not_local"`
	Examples       []string `json:"examples,omitempty"`
	Error          string   `json:"error,omitempty"`
}

const maxScanExamples = 8

// compareViews checks views (one per live node) against each other and against the
// clients. It is pure: the tests feed it tables.
func compareViews(views []namesView, clients []scanClient) ScanResult {
	var res ScanResult
	example := func(format string, args ...any) {
		if len(res.Examples) < maxScanExamples {
			res.Examples = append(res.Examples, fmt.Sprintf(format, args...))
		}
	}
	type local struct {
		node uint16
		conn uint64
	}
	byNode := map[uint16]int{}
	owners := map[string][]local{}
	for i, v := range views {
		res.Nodes = append(res.Nodes, v.NodeID)
		byNode[v.NodeID] = i
		for _, l := range v.Local {
			owners[l.Name] = append(owners[l.Name], local{v.NodeID, l.Conn})
		}
	}
	seen := map[string]bool{}
	for name, os := range owners {
		seen[name] = true
		if len(os) > 1 {
			res.TwoOwners++
			example("two owners: %q local on nodes %v", name, os)
		}
	}
	for _, v := range views {
		cached := map[string]bool{}
		for _, r := range v.Remote {
			seen[r.Name] = true
			cached[r.Name] = true
			oi, ok := byNode[r.Node]
			if !ok && !r.Live {
				res.Orphaned++
				continue
			}
			if !ok {
				res.Dangling++
				example("dangling: node %d caches %q on node %d, not scanned", v.NodeID, r.Name, r.Node)
				continue
			}
			owner := views[oi]
			held := false
			for _, o := range owners[r.Name] {
				held = held || o.node == r.Node && o.conn == r.Conn
			}
			if owner.Epoch != r.Epoch || !held {
				res.CacheDisagrees++
				example("cache: node %d has %q on node %d epoch %d conn %d; node %d (epoch %d) holds %v",
					v.NodeID, r.Name, r.Node, r.Epoch, r.Conn, r.Node, owner.Epoch, owners[r.Name])
			}
		}
		for name, os := range owners {
			if !cached[name] && (len(os) != 1 || os[0].node != v.NodeID) {
				res.CacheDisagrees++
				example("cache: node %d has no entry for %q, local on %v", v.NodeID, name, os)
			}
		}
	}
	for _, c := range clients {
		if c.View < 0 || c.View >= len(views) {
			continue
		}
		v := views[c.View]
		ok := false
		for _, o := range owners[c.Name] {
			ok = ok || o.node == v.NodeID && o.conn == c.Conn
		}
		if !ok {
			res.ClientNotLocal++
			example("client: %q connected to node %d as conn %d, local there as %v", c.Name, v.NodeID, c.Conn, owners[c.Name])
		}
	}
	res.Names = len(seen)
	res.Consistent = res.TwoOwners == 0 && res.CacheDisagrees == 0 && res.Dangling == 0 && res.ClientNotLocal == 0
	sort.Strings(res.Examples)
	return res
}

// fetchViews GETs /cluster/names from every admin address.
func fetchViews(ctx context.Context, hc *http.Client, admins []string) ([]namesView, error) {
	views := make([]namesView, len(admins))
	for i, a := range admins {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/cluster/names", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("%s/cluster/names: %s", a, resp.Status)
		}
		err = json.NewDecoder(resp.Body).Decode(&views[i])
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s/cluster/names: %w", a, err)
		}
	}
	return views, nil
}

// scanUntil fetches and compares the views until they are consistent or ctx ends (or
// within ends), and returns the last comparison. clients is called before every round
// (clients move while the scan runs).
func scanUntil(ctx context.Context, admins []string, within time.Duration, clients func() []scanClient) ScanResult {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var res ScanResult
	compared := false // res holds a comparison, not only an error
	for round := 1; ; round++ {
		cs := clients()
		views, err := fetchViews(ctx, hc, admins)
		switch {
		case err == nil:
			res, compared = compareViews(views, cs), true
		case compared && ctx.Err() != nil:
			// The time ran out in the middle of a round: report the last comparison
			// (what was still inconsistent), not just the cut-off fetch.
			res.Rounds = round - 1
			return res
		default:
			res = ScanResult{Error: err.Error()}
		}
		res.Rounds = round
		if res.Consistent {
			return res
		}
		select {
		case <-ctx.Done():
			return res
		case <-time.After(250 * time.Millisecond):
		}
	}
}
