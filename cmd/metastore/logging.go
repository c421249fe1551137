package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// etcd's --log-outputs targets besides file paths.
const (
	logOutputDefault = "default" // stderr (etcd: journald under systemd, else stderr)
	logOutputStderr  = "stderr"
	logOutputStdout  = "stdout"
)

// defaultLogRotationConfig is etcd's DefaultLogRotationConfig: 100 MB
// files, kept forever, UTC names, not compressed.
const defaultLogRotationConfig = `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`

// errLogRotationInvalidLogOutput is etcd's error text.
var errLogRotationInvalidLogOutput = errors.New("--log-outputs requires a single file path when --log-rotate-config-json is defined")

// logFlags are etcd's logging flags beside --log-level.
type logFlags struct {
	format         string   // --log-format: json or console
	outputs        []string // --log-outputs
	enableRotation bool     // --enable-log-rotation
	rotationJSON   string   // --log-rotation-config-json
}

func (l *logFlags) register(fs *flag.FlagSet) {
	l.outputs = []string{logOutputDefault}
	fs.StringVar(&l.format, "log-format", "json", "Configures log format. Only supports json, console. Default is 'json'.")
	fs.Var((*urlsFlag)(&l.outputs), "log-outputs", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.")
	fs.BoolVar(&l.enableRotation, "enable-log-rotation", false, "Enable log rotation of a single log-outputs file target.")
	fs.StringVar(&l.rotationJSON, "log-rotation-config-json", defaultLogRotationConfig, "Configures log rotation if enabled with a JSON logger config. Default: MaxSize=100(MB), MaxAge=0(days,no limit), MaxBackups=0(no limit), LocalTime=false(UTC), Compress=false(gzip)")
}

// build returns the logger the flags describe, at level. Every problem is
// reported at once.
func (l *logFlags) build(level string) (*zap.Logger, error) {
	var errs []error
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error, panic, fatal", level))
	}
	if l.format != "json" && l.format != "console" {
		errs = append(errs, fmt.Errorf("--log-format: %q is not json or console", l.format))
	}
	if len(l.outputs) == 0 {
		errs = append(errs, errors.New("--log-outputs must not be empty"))
	}
	var rotate *lumberjack.Logger
	if l.enableRotation {
		files := 0
		for _, o := range l.outputs {
			if !isStdLogOutput(o) {
				files++
			}
		}
		if files != 1 {
			errs = append(errs, errLogRotationInvalidLogOutput)
		}
		rotate = &lumberjack.Logger{}
		if err := json.Unmarshal([]byte(l.rotationJSON), rotate); err != nil {
			errs = append(errs, fmt.Errorf("--log-rotation-config-json: invalid log rotation config: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	var encoder zapcore.Encoder
	if l.format == "console" {
		encoder = zapcore.NewConsoleEncoder(enc)
	} else {
		encoder = zapcore.NewJSONEncoder(enc)
	}
	var sinks []zapcore.WriteSyncer
	var paths []string
	for _, o := range l.outputs {
		switch o {
		case logOutputDefault, logOutputStderr:
			paths = append(paths, "stderr")
		case logOutputStdout:
			paths = append(paths, "stdout")
		default:
			if rotate != nil {
				rotate.Filename = o
				sinks = append(sinks, zapcore.AddSync(rotate))
			} else {
				paths = append(paths, o)
			}
		}
	}
	if len(paths) > 0 {
		ws, _, err := zap.Open(paths...)
		if err != nil {
			return nil, fmt.Errorf("--log-outputs: %w", err)
		}
		sinks = append(sinks, ws)
	}
	core := zapcore.NewCore(encoder, zapcore.NewMultiWriteSyncer(sinks...), zap.NewAtomicLevelAt(lvl))
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)), nil
}

func isStdLogOutput(o string) bool {
	return o == logOutputDefault || o == logOutputStderr || o == logOutputStdout
}
