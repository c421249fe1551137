package transport

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{LocalID: 1, ClusterID: 2, SnapshotDir: "/x"}.WithDefaults()
	want := Config{
		LocalID: 1, ClusterID: 2, SnapshotDir: "/x",
		DialTimeout:         time.Second,
		SendQueueMsgs:       4096,
		MaxBatchBytes:       1 << 20,
		MaxMessageBytes:     16 << 20,
		SnapshotChunkBytes:  1 << 20,
		ReconnectBackoffMin: 100 * time.Millisecond,
		ReconnectBackoffMax: 5 * time.Second,
		PingInterval:        time.Second,
		IdleTimeout:         5 * time.Second,
	}
	if !reflect.DeepEqual(c, want) { // Config holds funcs: nil ones compare equal here
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidateReportsAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // each must appear in the error
	}{
		{"zero", Config{}.WithDefaults(), []string{"LocalID", "ClusterID", "SnapshotDir"}},
		{"bounds", Config{
			LocalID: 1, ClusterID: 1, SnapshotDir: "d",
			DialTimeout: -1, SendQueueMsgs: -1, MaxBatchBytes: -1, MaxMessageBytes: -1,
			SnapshotChunkBytes:  maxSnapshotChunkBytes + 1,
			ReconnectBackoffMin: time.Second, ReconnectBackoffMax: time.Millisecond,
			PingInterval: time.Second, IdleTimeout: time.Second,
		}, []string{"DialTimeout", "SendQueueMsgs", "MaxBatchBytes", "MaxMessageBytes",
			"SnapshotChunkBytes", "ReconnectBackoffMax", "IdleTimeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %s:\n%v", w, err)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("%d violations reported, want %d:\n%v", got, len(tc.want), err)
			}
		})
	}
}

func TestNewRequiresCollaborators(t *testing.T) {
	cfg := testConfig(t, 1, 7)
	if _, err := New(cfg, nil, &fakeSource{}, &fakeSink{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil Raft: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	wantCaps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, c := range wantCaps {
		c *= time.Millisecond
		d := b.next()
		if d < c/2 || d > c {
			t.Fatalf("wait %d = %v, want in [%v, %v]", i, d, c/2, c)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}
