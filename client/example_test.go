package client_test

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"time"

	"github.com/switchboard/switchboard/client"
)

// Example connects to a two-node deployment, serves requests to the name "greeter" and
// calls another service. It needs running servers, so it is compiled but not run.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, []string{"10.0.0.1:7400", "10.0.0.2:7400"}, client.Config{
		Name:  "greeter-1",
		Token: "s3cret",
		OnRequest: func(r *client.Request) {
			// Runs on the reader goroutine: answer quickly or hand off to another goroutine.
			r.Reply(append([]byte("hello, "), r.Payload...))
		},
		OnMessage: func(m client.Message) {
			log.Printf("message from %s (conn %d): %q", m.From, m.FromConn, m.Payload)
		},
		OnStateChange: func(s client.State) { log.Printf("switchboard: %v", s) },
		Logger:        slog.Default(),
	})
	if err != nil {
		log.Fatal(err) // errors.As(err, new(*client.ServerError)) tells a refusal from a network error
	}
	defer c.Close()

	if err := c.Register(ctx, "greeter"); err != nil {
		log.Fatal(err)
	}

	resp, err := c.Request(ctx, "clock", []byte("now?"))
	switch {
	case errors.Is(err, client.ErrNoRoute):
		log.Print("nobody serves clock")
	case errors.Is(err, client.ErrTimeout):
		log.Print("clock did not answer in time")
	case err != nil:
		log.Print(err)
	default:
		log.Printf("clock says %s", resp)
	}
}
