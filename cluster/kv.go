package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// msgState is what the stream leader holds for one key.
type msgState uint8

const (
	msgAbsent  msgState = iota // no message: never written, or its marker expired
	msgDeleted                 // a delete or purge marker, or a TTL expiry marker
	msgPresent                 // a value
)

// lastMsg asks the stream's leader for the last message of subject. Unlike a KV Get,
// which followers may answer from behind (nats-server#6557: right after a Create, a
// direct get said "not found" in up to 10% of tries), the JetStream STREAM.MSG.GET API is
// answered by the leader, so a takeover is never decided on a stale copy. Ownership is
// still decided only by the CAS that follows.
func lastMsg(ctx context.Context, nc *nats.Conn, stream, subject string) (data []byte, rev uint64, st msgState, err error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("cluster: get %s: %w", subject, err)
	}
	var resp struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, 0, 0, fmt.Errorf("cluster: get %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, 0, msgAbsent, nil
	case resp.Error != nil:
		return nil, 0, 0, fmt.Errorf("cluster: get %s: %s (code %d)", subject, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, 0, 0, fmt.Errorf("cluster: get %s: empty answer", subject)
	}
	h := resp.Message.Hdrs
	if bytes.Contains(h, []byte("KV-Operation: DEL")) || bytes.Contains(h, []byte("KV-Operation: PURGE")) ||
		bytes.Contains(h, []byte("Nats-Marker-Reason:")) {
		return nil, resp.Message.Seq, msgDeleted, nil
	}
	return resp.Message.Data, resp.Message.Seq, msgPresent, nil
}

// attemptTimeout bounds one JetStream API request made while a node starts. JetStream
// answers some requests only from a stream's (or the meta group's) leader, and a request
// that arrives while there is none, or before the server it reaches has applied the
// stream's assignment, is dropped without an answer; so every such request is bounded
// and retried, and none may wait on the whole start-up context.
const attemptTimeout = 2 * time.Second

// openBucket creates the bucket, or opens it when another node created it first,
// retrying until ctx ends: on a fresh cluster JetStream answers seconds after the
// routes are up (2.2–6.4 s measured), and until then every attempt fails. differs says
// the bucket existed with another configuration than cfg (a create with the same one
// succeeds), which then stands.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, log func(error)) (kv jetstream.KeyValue, differs bool, err error) {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		kv, err = js.CreateKeyValue(actx, cfg)
		differs = errors.Is(err, jetstream.ErrBucketExists)
		if differs {
			kv, err = js.KeyValue(actx, cfg.Bucket)
		}
		cancel()
		if err == nil {
			return kv, differs, nil
		}
		if last == nil || err.Error() != last.Error() {
			log(err)
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("cluster: bucket %s: %w (last error: %v)", cfg.Bucket, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// subjectOf is the subject a KV key's messages are stored under.
func subjectOf(bucket, key string) string { return "$KV." + bucket + "." + key }

// streamOf is the stream behind a KV bucket.
func streamOf(bucket string) string { return "KV_" + bucket }
