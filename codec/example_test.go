package codec_test

import (
	"fmt"

	"github.com/switchboard/switchboard/codec"
)

// Example shows the read loop of a connection: cut whole frames out of a buffer that may
// end inside a frame, and keep the rest for the next read.
func Example() {
	var in []byte
	in = codec.AppendSend(in, codec.FlagAck, 6, "bob", []byte("hello"))
	in = codec.AppendFrame(in, codec.TypePing, 0, 0, nil)
	in = in[:len(in)-3] // the PING is still on its way

	for {
		f, n, err := codec.Decode(in, codec.DefaultMaxFrame)
		if err == codec.ErrShort {
			break // keep in[:] and read more
		}
		if err != nil {
			fmt.Println("protocol error:", codec.CodeOf(err)) // send ERROR, close
			return
		}
		if f.Type == codec.TypeSend {
			name, payload, err := codec.ParseSend(f.Body)
			fmt.Printf("%v corr=%d ack=%v to=%s payload=%s err=%v\n",
				f.Type, f.Corr, f.Flags&codec.FlagAck != 0, name, payload, err)
		}
		in = in[n:]
	}
	fmt.Println("bytes left:", len(in))
	// Output:
	// SEND corr=6 ack=true to=bob payload=hello err=<nil>
	// bytes left: 7
}
