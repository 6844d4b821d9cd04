package limits

import "errors"

// ErrInvalidConfig is wrapped by every error Config.Validate returns; each names the
// offending field in kebab case.
var ErrInvalidConfig = errors.New("limits: invalid config")
