package config

import (
	"bytes"
	"os"
)

// SourceTokenFile is the source of a token read from token-file.
const SourceTokenFile = "token-file"

// readTokenFile reads token-file, if set, into Token: its first line, without the line
// end. A token set elsewhere as well is an error (which one should win is not obvious),
// and so is an empty or unreadable file.
func (ld *loader) readTokenFile(n *Node) {
	if n.TokenFile == "" {
		return
	}
	src, where := ld.sources["token-file"], "token-file"
	if n.Token != "" {
		ld.invalid("token-file", src, where, "set token or token-file, not both (token is set from "+ld.sources["token"]+")")
		return
	}
	data, err := os.ReadFile(n.TokenFile)
	if err != nil {
		ld.invalid("token-file", src, where, err.Error())
		return
	}
	line, _, _ := bytes.Cut(data, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) == 0 {
		ld.invalid("token-file", src, where, n.TokenFile+": empty first line: no token")
		return
	}
	n.Token = string(line)
	ld.sources["token"] = SourceTokenFile
}
