package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard/switchboard/server"
)

// credentialsFile is the layout of a credentials file:
//
//	users:
//	  billing:                      # the user name: the HELLO token is "billing:SECRET"
//	    token-hash: "$2a$10$..."    # switchboard hash-token < secret-file
//	    register: ["billing.*"]     # names it may REGISTER
//	    send: ["audit", "billing.*"] # names it may SEND to
//	    request: ["billing.*"]      # names it may REQUEST
//
// A pattern is a name, a prefix ending in "*", or "*" for every name; a missing list
// allows nothing.
type credentialsFile struct {
	Users map[string]credentialsUser `yaml:"users"`
}

type credentialsUser struct {
	TokenHash string   `yaml:"token-hash"`
	Register  []string `yaml:"register"`
	Send      []string `yaml:"send"`
	Request   []string `yaml:"request"`
}

// LoadCredentials reads and compiles a credentials file (see credentialsFile). Unknown
// keys, a user defined twice, a hash that is not bcrypt and bad patterns are errors, each
// naming the file. The hashes and patterns of every user are all checked and reported at
// once; a file the YAML decoder refuses (an unknown key, a user defined twice, a wrong
// type) is reported by that refusal alone. An empty file, or one without users, admits
// nobody.
func LoadCredentials(path string) (*server.Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f credentialsFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: %v", ErrFile, path, err)
	}
	users := make([]server.User, 0, len(f.Users))
	for _, name := range slices.Sorted(maps.Keys(f.Users)) {
		u := f.Users[name]
		users = append(users, server.User{Name: name, TokenHash: u.TokenHash,
			Register: u.Register, Send: u.Send, Request: u.Request})
	}
	c, err := server.NewCredentials(users)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
