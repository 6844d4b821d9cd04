package server

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/codec"
)

// User is one entry of a credentials file, as an operator writes it: a name, the bcrypt
// hash of the user's secret (from HashToken, or `switchboard hash-token`) and the names
// the user may REGISTER, SEND to and REQUEST. A client authenticates as the user with the
// HELLO token "NAME:SECRET" (docs/PROTOCOL.md, section 5.1).
//
// A pattern is a name (exact match), a prefix ending in "*" ("billing.*" matches every
// name that starts with "billing."), or "*" alone (every name). An empty list allows
// nothing. Patterns compare bytes, as names do.
type User struct {
	Name      string
	TokenHash string
	Register  []string
	Send      []string
	Request   []string
}

// Credentials is a compiled credentials file: its users, their token hashes and their
// permissions with every pattern precompiled. Build one with NewCredentials and give it
// to a server with WithCredentials or ReloadCredentials. Immutable; safe for concurrent
// use.
type Credentials struct {
	users []compiledUser
}

type compiledUser struct {
	name  string
	hash  []byte
	perms *Permissions
}

// Len returns the number of users.
func (c *Credentials) Len() int { return len(c.users) }

// Permissions are what one user may do, compiled: the name patterns of REGISTER, SEND
// and REQUEST. Immutable; safe for concurrent use. A nil *Permissions allows nothing.
type Permissions struct {
	Register, Send, Request Patterns
}

// Patterns is a compiled list of name patterns. Match costs one map lookup plus one
// prefix comparison per prefix pattern, and does not allocate. The zero value matches
// nothing.
type Patterns struct {
	all      bool
	exact    map[string]struct{}
	prefixes []string
}

// Match reports whether name matches one of the patterns.
func (p *Patterns) Match(name []byte) bool {
	if p.all {
		return true
	}
	if _, ok := p.exact[string(name)]; ok { // no allocation: compiler-converted
		return true
	}
	for _, pre := range p.prefixes {
		if len(name) >= len(pre) && string(name[:len(pre)]) == pre {
			return true
		}
	}
	return false
}

// compilePatterns compiles one list, reporting each bad pattern.
func compilePatterns(list []string) (Patterns, []error) {
	var p Patterns
	var errs []error
	for _, s := range list {
		switch i := strings.IndexByte(s, '*'); {
		case s == "":
			errs = append(errs, errors.New("empty pattern"))
		case len(s) > codec.MaxNameLen:
			errs = append(errs, fmt.Errorf("pattern %.20q... is longer than %d bytes", s, codec.MaxNameLen))
		case s == "*":
			p.all = true
		case i == len(s)-1:
			p.prefixes = append(p.prefixes, s[:i])
		case i >= 0:
			errs = append(errs, fmt.Errorf("pattern %q: '*' may only end a pattern", s))
		default:
			if p.exact == nil {
				p.exact = make(map[string]struct{})
			}
			p.exact[s] = struct{}{}
		}
	}
	return p, errs
}

// MaxSecretLen is the longest user secret: bcrypt reads at most 72 bytes.
const MaxSecretLen = 72

// NewCredentials checks and compiles users. It reports every problem, each naming its
// user: an empty name or one with ':' (the token separator), a name used twice, a token
// hash that is not bcrypt, a bad pattern.
func NewCredentials(users []User) (*Credentials, error) {
	var errs []error
	c := &Credentials{}
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("server: credentials: user %q: %s", u.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case u.Name == "":
			bad("empty user name")
		case strings.IndexByte(u.Name, ':') >= 0:
			bad("a user name must not contain ':' (the token is NAME:SECRET)")
		case len(u.Name)+1 >= codec.MaxNameLen:
			bad("name longer than %d bytes leaves no room for a secret in the token", codec.MaxNameLen-2)
		case seen[u.Name]:
			bad("defined twice")
		}
		seen[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.TokenHash)); err != nil {
			bad("token-hash is not a bcrypt hash (make one with switchboard hash-token): %v", err)
		}
		perms := &Permissions{}
		for _, l := range []struct {
			what string
			src  []string
			dst  *Patterns
		}{{"register", u.Register, &perms.Register}, {"send", u.Send, &perms.Send}, {"request", u.Request, &perms.Request}} {
			p, perrs := compilePatterns(l.src)
			for _, e := range perrs {
				bad("%s: %v", l.what, e)
			}
			*l.dst = p
		}
		c.users = append(c.users, compiledUser{name: u.Name, hash: []byte(u.TokenHash), perms: perms})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// HashToken returns the bcrypt hash of a user's secret at bcrypt's default cost (10),
// for the token-hash of a credentials file. The secret must be 1 to MaxSecretLen bytes.
// It takes about 50 ms of CPU, as does every check of a token against it.
func HashToken(secret []byte) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("server: empty secret")
	case len(secret) > MaxSecretLen:
		return "", fmt.Errorf("server: secret longer than %d bytes (bcrypt reads no more)", MaxSecretLen)
	}
	h, err := bcrypt.GenerateFromPassword(secret, bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("server: hash secret: %w", err)
	}
	return string(h), nil
}
