package server

import (
	"testing"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// TestReplyOnlyFromResponder: a REPLY carrying a valid token is taken only from the
// connection the INCOMING went to. Another connection that learnt the token is told
// NO_ROUTE, as for an expired token; the request waits for its responder, whose REPLY
// is the one outcome the requester sees. Tried with the forger on either loop.
func TestReplyOnlyFromResponder(t *testing.T) {
	for _, forgerLoop := range []int{0, 1} {
		t.Run("forger-on-loop-"+string(rune('0'+forgerLoop)), func(t *testing.T) {
			s := startServer(t, Config{Loops: 2})
			svc := registeredOn(t, s, "svc", 0)
			req := connectOn(t, s, "req", 1)
			mallory := connectOn(t, s, "mallory", forgerLoop)
			req.Write(codec.AppendRequest(nil, 7, "svc", 60000, []byte("q")))
			f := svc.Expect(codec.TypeIncoming)
			tok, _, _, _, err := codec.ParseIncoming(f.Body)
			if err != nil {
				t.Fatal(err)
			}
			mallory.Write(codec.AppendReply(nil, 3, tok, []byte("forged")))
			if f, e := mallory.ExpectError(codec.CodeNoRoute); f.Corr != 3 || e.Reason != "reply token unknown or expired" {
				t.Fatalf("forged REPLY: corr %d %q", f.Corr, e.Reason)
			}
			svc.Write(codec.AppendReply(nil, 4, tok, []byte("genuine")))
			r := req.Expect(codec.TypeResponse)
			if r.Corr != 7 || string(r.Body) != "genuine" {
				t.Fatalf("RESPONSE corr %d %q; want 7 genuine", r.Corr, r.Body)
			}
			pingBarrier(t, req, 8) // nothing else arrived before the PONG
			pingBarrier(t, svc, 9) // the genuine REPLY got no ERROR
		})
	}
}

// TestReplyTokensNotGuessable: the responder of some requests cannot answer requests
// pending for another responder by guessing their tokens from its own. Tokens keep the
// node, loop and slot (routing) but carry 16 random bits instead of a counter, and only the
// responder's own REPLY counts: a sweep of the neighbours of a known token, in the slot and
// in the low bits, answers nothing.
func TestReplyTokensNotGuessable(t *testing.T) {
	s := startServer(t, Config{Loops: 2})
	svc := registeredOn(t, s, "svc", 0)
	registeredOn(t, s, "other", 0)
	req := connectOn(t, s, "req", 1)
	var toks []uint64
	for corr := uint32(1); corr <= 4; corr++ {
		req.Write(codec.AppendRequest(nil, 100+corr, "other", 60000, nil)) // tokens svc never sees
		req.Write(codec.AppendRequest(nil, corr, "svc", 60000, nil))
		f := svc.Expect(codec.TypeIncoming)
		tok, _, _, _, err := codec.ParseIncoming(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	known := shard.ConnID(toks[0])
	live := map[uint64]bool{}
	for _, tk := range toks {
		live[tk] = true
	}
	var batch []byte
	sent := 0
	for d := -32; d <= 31; d++ { // neighbouring slots with the known random bits, and neighbouring bits in the known slot
		guesses := []shard.ConnID{shard.MakeConnID(known.Node(), uint8(known.Loop()), known.Slot(), uint16(int(known.Gen())+d))}
		if slot := int(known.Slot()) + d; slot >= 0 {
			guesses = append(guesses, shard.MakeConnID(known.Node(), uint8(known.Loop()), uint32(slot), known.Gen()))
		}
		for _, guess := range guesses {
			if live[uint64(guess)] {
				continue
			}
			sent++
			batch = codec.AppendReply(batch, uint32(1000+sent), uint64(guess), []byte("guess"))
		}
	}
	svc.Write(batch)
	for i := 0; i < sent; i++ {
		svc.ExpectError(codec.CodeNoRoute)
	}
	pingBarrier(t, req, 99) // no RESPONSE reached the requester
	var stale uint64
	s.eachLoop(func(lp *loop) { stale += lp.stats.staleReplies.Load() })
	if stale != uint64(sent) {
		t.Fatalf("stale replies counted %d; want %d", stale, sent)
	}
}
