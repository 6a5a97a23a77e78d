package node

import (
	"strings"
	"testing"
	"time"
)

// TestClusterConfig: bad --advertise-url values and heartbeat settings are
// refused with the flag named; good ones pass.
func TestClusterConfig(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string // "" for valid
	}{
		{func(c *Config) { c.AdvertiseURL = "http://10.0.0.5:9000" }, ""},
		{func(c *Config) { c.AdvertiseURL = "https://node-1.example:443/" }, ""},
		{func(c *Config) { c.AdvertiseURL = "10.0.0.5:9000" }, "--advertise-url"},
		{func(c *Config) { c.AdvertiseURL = "ftp://h:1" }, "--advertise-url"},
		{func(c *Config) { c.AdvertiseURL = "http://h" }, "--advertise-url"},
		{func(c *Config) { c.AdvertiseURL = "http://h:1/api" }, "--advertise-url"},
		{func(c *Config) { c.AdvertiseURL = "http://u:p@h:1" }, "--advertise-url"},
		{func(c *Config) { c.ClusterHeartbeat = -time.Second }, "heartbeat"},
		{func(c *Config) { c.ClusterHeartbeat, c.ClusterTTL = time.Second, 1500*time.Millisecond }, "TTL"},
		{func(c *Config) { c.ClusterTTL = time.Second }, "TTL"}, // the default heartbeat, 1 s
		{func(c *Config) { c.ClusterHeartbeat, c.ClusterTTL = 200*time.Millisecond, time.Second }, ""},
	} {
		cfg := Defaults()
		tc.mod(&cfg)
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", cfg.AdvertiseURL, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("advertise %q, heartbeat %s, ttl %s: %v, want an error naming %s", cfg.AdvertiseURL, cfg.ClusterHeartbeat, cfg.ClusterTTL, err, tc.want)
		}
	}
}
