package raftlog

import (
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

// raftLogger adapts zap to raft.Logger, whose only difference from zap's
// sugared logger is the spelling of Warning.
type raftLogger struct{ *zap.SugaredLogger }

var _ raft.Logger = raftLogger{}

func newRaftLogger(lg *zap.Logger) raftLogger {
	return raftLogger{lg.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (l raftLogger) Warning(v ...any)                 { l.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...any) { l.Warnf(format, v...) }
