package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestLogFormats(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"json", "console"} {
		path := filepath.Join(dir, format+".log")
		l := logFlags{format: format, outputs: []string{path}, rotationJSON: defaultLogRotationConfig}
		lg, err := l.build("info")
		if err != nil {
			t.Fatal(err)
		}
		lg.Debug("hidden")
		lg.Info("hello", zap.String("k", "v"))
		lg.Sync()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out := string(b)
		if strings.Contains(out, "hidden") || strings.Count(out, "\n") != 1 {
			t.Fatalf("%s log:\n%s", format, out)
		}
		switch format {
		case "json":
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("json log line %q: %v", out, err)
			}
			if m["level"] != "info" || m["msg"] != "hello" || m["k"] != "v" || m["ts"] == nil || m["caller"] == nil {
				t.Errorf("json log line %v", m)
			}
		case "console":
			if !strings.Contains(out, "\tinfo\t") || !strings.Contains(out, "\thello\t") || !strings.Contains(out, `{"k": "v"}`) {
				t.Errorf("console log line %q", out)
			}
		}
	}
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "member.log")
	l := logFlags{format: "json", outputs: []string{path}, enableRotation: true,
		rotationJSON: `{"maxsize": 1, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`}
	lg, err := l.build("info")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1000)
	for i := 0; i < 1500; i++ { // about 1.5 MB: one rotation
		lg.Info(line)
	}
	lg.Sync()
	files, _ := filepath.Glob(filepath.Join(dir, "member*.log"))
	if len(files) < 2 {
		t.Fatalf("files after 1.5 MB with maxsize 1 MB: %v", files)
	}
}

func TestLogFlagErrors(t *testing.T) {
	tests := []struct {
		l       logFlags
		level   string
		wantErr string
	}{
		{logFlags{format: "xml", outputs: []string{"stderr"}}, "info", "--log-format"},
		{logFlags{format: "json", outputs: []string{"stderr"}}, "loud", "--log-level"},
		{logFlags{format: "json", outputs: []string{"stderr"}, enableRotation: true, rotationJSON: defaultLogRotationConfig}, "info", errLogRotationInvalidLogOutput.Error()},
		{logFlags{format: "json", outputs: []string{"/tmp/a.log"}, enableRotation: true, rotationJSON: "{"}, "info", "--log-rotation-config-json"},
	}
	for _, tc := range tests {
		_, err := tc.l.build(tc.level)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: error %v, want %q", tc.l, err, tc.wantErr)
		}
	}
	// Every problem at once.
	_, err := (&logFlags{format: "xml", outputs: []string{"stderr"}}).build("loud")
	if err == nil || !strings.Contains(err.Error(), "--log-format") || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("two problems: %v", err)
	}
}
