package limits

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v; want nil", err)
	}
	c := DefaultConfig()
	if got := c.BreakerConfig(); got != DefaultBreakerConfig() {
		t.Errorf("BreakerConfig = %+v; want %+v", got, DefaultBreakerConfig())
	}
	if got := c.TargetBreakerConfig(); got != DefaultTargetBreakerConfig() {
		t.Errorf("TargetBreakerConfig = %+v; want %+v", got, DefaultTargetBreakerConfig())
	}
	if got := c.Thresholds(); got != DefaultThresholds() {
		t.Errorf("Thresholds = %+v; want %+v", got, DefaultThresholds())
	}
	msgs, bytes := c.ConnLimiters()
	acc := c.AcceptLimiter()
	if !msgs.Unlimited() || !bytes.Unlimited() || !acc.Unlimited() || c.NodeLimiter(2).Rate() != 0 || c.PerIP().Max() != 0 {
		t.Error("default limiters are not unlimited")
	}
}

// TestConfigZero checks what an explicit 0 means: off or none where that is meaningful
// (it survives), an error naming the field otherwise (no default is put in its place).
func TestConfigZero(t *testing.T) {
	c := DefaultConfig()
	c.ZoneHysteresis, c.ZoneMinDwell, c.ConnMsgRate, c.MaxConnsPerIP = 0, 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("meaningful zeros: Validate = %v; want nil", err)
	}
	if th := c.Thresholds(); th.Hysteresis != 0 || th.MinDwell != 0 {
		t.Errorf("Thresholds = %+v; want hysteresis and dwell 0", th)
	}
	for _, tt := range []struct {
		field  string
		modify func(*Config)
	}{
		{"breaker-error-rate", func(c *Config) { c.BreakerErrorRate = 0 }},
		{"breaker-window", func(c *Config) { c.BreakerWindow = 0 }},
		{"breaker-min-requests", func(c *Config) { c.BreakerMinRequests = 0 }},
		{"breaker-open-for", func(c *Config) { c.BreakerOpenFor = 0 }},
		{"breaker-probes", func(c *Config) { c.BreakerProbes = 0 }},
		{"target-error-rate", func(c *Config) { c.TargetErrorRate = 0 }},
		{"target-min-failures", func(c *Config) { c.TargetMinFailures = 0 }},
		{"max-targets", func(c *Config) { c.MaxTargets = 0 }},
		{"zone-yellow", func(c *Config) { c.ZoneYellow = 0 }},
	} {
		t.Run(tt.field, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate = %v; want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestConfigSeedValues(t *testing.T) {
	c := DefaultConfig()
	c.ConnMsgRate, c.NodeMsgRate, c.AcceptRate, c.AcceptBurst = SeedConnMsgRate, SeedNodeMsgRate, SeedAcceptRate, 10
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	msgs, _ := c.ConnLimiters()
	acc := c.AcceptLimiter()
	if msgs.Rate() != 500 || msgs.Burst() != 500 || acc.Rate() != 100 || acc.Burst() != 10 || c.NodeLimiter(4).Rate() != 10000 {
		t.Errorf("limiters: msgs %d/%d accept %d/%d node %d", msgs.Rate(), msgs.Burst(), acc.Rate(), acc.Burst(), c.NodeLimiter(4).Rate())
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		fields []string // every field named in the error
	}{
		{"negative-rates", func(c *Config) { c.ConnMsgRate, c.NodeMsgBurst, c.MaxConnsPerIP = -1, -2, -3 },
			[]string{"conn-msg-rate", "node-msg-burst", "max-conns-per-ip"}},
		{"rate-too-large", func(c *Config) { c.ConnByteRate = MaxRate + 1 }, []string{"conn-byte-rate"}},
		{"error-rate-above-one", func(c *Config) { c.BreakerErrorRate, c.TargetErrorRate = 1.5, -0.5 },
			[]string{"breaker-error-rate", "target-error-rate"}},
		{"negative-durations", func(c *Config) { c.BreakerWindow, c.ZoneMinDwell = -time.Second, -1 },
			[]string{"breaker-window", "zone-min-dwell"}},
		{"zones-out-of-order", func(c *Config) { c.ZoneOrange = 0.95 }, []string{"zone-red"}},
		{"yellow-above-orange", func(c *Config) { c.ZoneYellow = 0.8 }, []string{"zone-orange"}},
		{"negative-zone", func(c *Config) { c.ZoneYellow = -0.1 }, []string{"zone-yellow"}},
		{"hysteresis-too-large", func(c *Config) { c.ZoneHysteresis = 0.6 }, []string{"zone-hysteresis"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate = nil; want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = false for %v", err)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != len(tt.fields) {
				t.Errorf("%d problems reported (%v); want %d", n, err, len(tt.fields))
			}
		})
	}
}
