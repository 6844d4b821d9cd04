package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

func runSend(c *cli, args []string) int {
	fs := newFlags("send", "switchboard send [flags] NAME [PAYLOAD]",
		"Sends PAYLOAD (or stdin, when PAYLOAD is not given) to the connection that registered\n"+
			"NAME, as a one-way message. Without --ack nothing says whether it arrived; the command\n"+
			"still waits until the node has read every message (a PING after them) before exiting.\n"+
			"With --count N the same payload is sent N times and a summary is printed.\n\n"+
			clientExitCodes)
	ack := fs.Bool("ack", false, "ask the node to confirm each message (OK, or the ERROR that refused it)")
	count := fs.Int("count", 1, "send the payload this many times")
	fs.Section("Message", "ack", "count")
	cf := addClientFlags(fs)
	pos, code, done := parseInterspersed(c, fs, args)
	if done {
		return code
	}
	switch {
	case len(pos) < 1 || len(pos) > 2:
		fs.Fail(c.stderr, "want NAME and at most one PAYLOAD")
		return exitUsage
	case *count < 1:
		fs.Fail(c.stderr, fmt.Sprintf("--count: want at least 1, got %d", *count))
		return exitUsage
	}
	setup, err := cf.resolve(fs, c.environ, "switchboard-send")
	if err != nil {
		fs.Fail(c.stderr, err.Error())
		return exitUsage
	}
	name := pos[0]
	payload, err := readPayload(c, pos, 1)
	if err != nil {
		fmt.Fprintf(c.stderr, "switchboard send: %v\n", err)
		return exitFailure
	}

	ctx := context.Background()
	cl, err := setup.dial(ctx, c, setup.cfg, slog.LevelWarn)
	if err != nil {
		return report(c, setup.json, "send", "", err)
	}
	defer cl.Close()
	start := time.Now()
	sent := 0
	for ; sent < *count; sent++ {
		if *ack {
			err = cl.SendAck(ctx, name, payload)
		} else {
			err = cl.Send(ctx, name, payload)
		}
		if err != nil {
			break
		}
	}
	if err == nil && !*ack {
		// The node reads a connection's frames in order: once the PONG is back, it has
		// taken every SEND above (and dropped or refused them without a word).
		_, err = cl.Ping(ctx)
	}
	elapsed := time.Since(start)
	if err != nil {
		if *count > 1 {
			fmt.Fprintf(c.stderr, "switchboard send: %d of %d sent before the failure\n", sent, *count)
		}
		return report(c, setup.json, "send", cl.Addr(), err)
	}
	switch {
	case setup.json:
		writeJSONLine(c.stdout, map[string]any{"name": name, "sent": sent, "acked": *ack, "bytes": len(payload),
			"elapsed_ms": millisOf(elapsed), "node": cl.Addr()})
	case *count > 1:
		how := ""
		if *ack {
			how = ", each acknowledged"
		}
		fmt.Fprintf(c.stdout, "sent %d messages of %d bytes to %s in %v (%.0f/s)%s\n", sent, len(payload), name,
			elapsed.Round(time.Microsecond), float64(sent)/elapsed.Seconds(), how)
	}
	return exitOK
}

func runRequest(c *cli, args []string) int {
	fs := newFlags("request", "switchboard request [flags] NAME [PAYLOAD]",
		"Sends PAYLOAD (or stdin, when PAYLOAD is not given) as a request to the connection that\n"+
			"registered NAME and prints the response on stdout, followed by a newline unless it ends\n"+
			"with one (--raw: exactly the response). If the node answers with an ERROR, its code and\n"+
			"reason go to stderr and the exit status says which class it was. --timeout is also the\n"+
			"timeout the responder is given.\n\n"+
			clientExitCodes)
	raw := fs.Bool("raw", false, "print the response exactly, with no newline added")
	cf := addClientFlags(fs)
	fs.Section("Output", "raw")
	pos, code, done := parseInterspersed(c, fs, args)
	if done {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Fail(c.stderr, "want NAME and at most one PAYLOAD")
		return exitUsage
	}
	setup, err := cf.resolve(fs, c.environ, "switchboard-request")
	if err != nil {
		fs.Fail(c.stderr, err.Error())
		return exitUsage
	}
	name := pos[0]
	payload, err := readPayload(c, pos, 1)
	if err != nil {
		fmt.Fprintf(c.stderr, "switchboard request: %v\n", err)
		return exitFailure
	}

	ctx := context.Background()
	cl, err := setup.dial(ctx, c, setup.cfg, slog.LevelWarn)
	if err != nil {
		return report(c, setup.json, "request", "", err)
	}
	defer cl.Close()
	start := time.Now()
	resp, err := cl.Request(ctx, name, payload)
	rtt := time.Since(start)
	if err != nil {
		return report(c, setup.json, "request", cl.Addr(), err)
	}
	switch {
	case setup.json:
		writeJSONLine(c.stdout, payloadJSON(map[string]any{"name": name, "rtt_ms": millisOf(rtt), "node": cl.Addr()}, resp))
	case *raw || len(resp) > 0 && resp[len(resp)-1] == '\n':
		_, _ = c.stdout.Write(resp)
	default:
		_, _ = c.stdout.Write(append(resp, '\n'))
	}
	return exitOK
}
