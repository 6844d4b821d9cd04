package cluster

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// TestWatchAfterStepdown: after the buckets' stream leaders step down, a name claimed on
// any node is seen by every other node's lookup (its watch follows the new leader, or is
// restarted).
func TestWatchAfterStepdown(t *testing.T) {
	tc := startCluster(t)
	ds := []*Directory{tc.node(0).Directory(), tc.node(1).Directory(), tc.node(2).Directory()}
	// A stepdown may be refused now and then (a leader just elected); each bucket's
	// leader must have stepped down at least once, or nothing was tested.
	steppedDown := map[string]int{}
	for round := range 4 {
		for _, bucket := range []string{ds[0].namesBucket, ds[0].leasesBucket} {
			msg, err := ds[round%3].nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+streamOf(bucket), nil, 5*time.Second)
			if err != nil {
				t.Logf("stepdown of %s: %v", bucket, err)
				continue
			}
			// JetStream answers an API error in the reply's body.
			var reply struct {
				Success bool `json:"success"`
				Error   *struct {
					Code        int    `json:"code"`
					Description string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				t.Fatalf("stepdown of %s: reply %q: %v", bucket, msg.Data, err)
			}
			if !reply.Success {
				t.Logf("stepdown of %s refused: %+v", bucket, reply.Error)
				continue
			}
			steppedDown[bucket]++
		}
		for i, d := range ds {
			name := "after-stepdown-" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
			id := conn(uint16(i+1), uint32(10+round))
			var err error
			waitFor(t, "a claim of "+name, 20*time.Second, func() bool {
				err = claim(t, d, name, id)
				return err == nil
			})
			for j, o := range ds {
				waitFor(t, "node "+strconv.Itoa(j+1)+" to see "+name, 10*time.Second, func() bool { return lookup(o, name) == id })
			}
		}
	}
	for _, bucket := range []string{ds[0].namesBucket, ds[0].leasesBucket} {
		if steppedDown[bucket] == 0 {
			t.Errorf("the leader of %s never stepped down in 4 rounds: nothing tested", bucket)
		}
	}
	t.Logf("stepdowns done: %v", steppedDown)
}
