package config

import (
	"errors"
	"fmt"
)

var (
	// ErrUnknownKey means a config file names a key that is not a setting.
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrInvalidValue means a value has the wrong type or does not parse.
	ErrInvalidValue = errors.New("config: invalid value")
	// ErrFile means the config file could not be read or is not a YAML mapping.
	ErrFile = errors.New("config: bad config file")
)

// Error is one problem with one setting. It wraps ErrUnknownKey or ErrInvalidValue.
type Error struct {
	Key    string // the setting's key, or the unknown key as written
	Source string // SourceFile, SourceEnv or SourceFlag
	Where  string // "file.yaml:3", "SWITCHBOARD_NODE_ID" or "--node-id"
	Msg    string // what is wrong, e.g. `want an integer, got "abc"`
	Kind   error  // ErrUnknownKey or ErrInvalidValue
}

func (e *Error) Error() string {
	if e.Source == SourceFlag {
		return fmt.Sprintf("config: %s: %s", e.Where, e.Msg) // the flag name is the key
	}
	return fmt.Sprintf("config: %s: %s: %s", e.Where, e.Key, e.Msg)
}

// Unwrap returns the error's kind, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }
