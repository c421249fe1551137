package server

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Auto-compaction modes, as etcd's --auto-compaction-mode.
const (
	compactPeriodic = "periodic"
	compactRevision = "revision"
)

// revisionCompactionInterval is how often revision mode compacts, as etcd.
// A variable so tests can shorten it.
var revisionCompactionInterval = 5 * time.Minute

// maxPeriodicInterval caps how often periodic mode compacts, as etcd: a
// retention above an hour still compacts hourly.
const maxPeriodicInterval = time.Hour

// parseAutoCompaction returns the periodic retention or the revision count;
// both zero means auto-compaction is off.
func parseAutoCompaction(mode, retention string) (time.Duration, int64, error) {
	switch mode {
	case compactPeriodic, "":
		if retention == "" || retention == "0" {
			return 0, 0, nil
		}
		if h, err := strconv.ParseInt(retention, 10, 64); err == nil {
			if h < 0 {
				return 0, 0, fmt.Errorf("--auto-compaction-retention %q must not be negative", retention)
			}
			return time.Duration(h) * time.Hour, 0, nil
		}
		d, err := time.ParseDuration(retention)
		if err != nil || d < 0 {
			return 0, 0, fmt.Errorf("--auto-compaction-retention %q is neither hours nor a duration", retention)
		}
		return d, 0, nil
	case compactRevision:
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("--auto-compaction-retention %q must be a number of revisions", retention)
		}
		return 0, n, nil
	default:
		return 0, 0, fmt.Errorf("--auto-compaction-mode must be periodic or revision, not %q", mode)
	}
}

// compactor proposes compactions on the leader per the auto-compaction
// settings. Followers sample too, so a new leader knows recent history.
type compactor struct {
	s         *Server
	period    time.Duration // periodic retention, or 0
	revisions int64         // revision retention, or 0
	lg        *zap.Logger
}

// revSample is the store's revision at a moment.
type revSample struct {
	at  time.Time
	rev int64
}

// maxRevSamples bounds the periodic compactor's history of samples.
const maxRevSamples = 128

func (c *compactor) run(ctx context.Context) {
	if c.period == 0 && c.revisions == 0 {
		return
	}
	interval := revisionCompactionInterval
	sampleEvery := interval
	if c.period > 0 {
		interval = min(c.period, maxPeriodicInterval)
		sampleEvery = max(c.period/10, time.Millisecond)
	}
	var samples []revSample
	lastCompact := time.Now()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rev := c.s.kv.Rev()
			samples = append(samples, revSample{at: now, rev: rev})
			if len(samples) > maxRevSamples {
				samples = samples[1:]
			}
			if now.Sub(lastCompact) < interval || !c.s.node.IsLeader() {
				continue
			}
			target := int64(0)
			if c.period > 0 {
				// The newest revision that is at least `period` old.
				for _, smp := range samples {
					if now.Sub(smp.at) >= c.period {
						target = smp.rev
					}
				}
			} else {
				target = rev - c.revisions
			}
			lastCompact = now
			if target <= c.s.kv.CompactedRev() || target <= 0 {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
			_, err := c.s.compact(cctx, target, false)
			cancel()
			if err != nil {
				c.lg.Warn("auto-compaction failed", zap.Int64("revision", target), zap.Error(err))
			} else {
				c.lg.Info("auto-compacted", zap.Int64("revision", target), zap.String("mode", c.mode()))
			}
		}
	}
}

func (c *compactor) mode() string {
	if c.period > 0 {
		return compactPeriodic
	}
	return compactRevision
}
