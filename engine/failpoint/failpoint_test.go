package failpoint

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want map[string]action
		err  string
	}{
		{spec: "", want: map[string]action{}},
		{spec: "raftBeforeSave=panic", want: map[string]action{RaftBeforeSave: {kind: "panic", count: -1}}},
		{spec: " raftSync = 1*error ; compactMid=sleep(25)", want: map[string]action{
			RaftSync: {kind: "error", count: 1}, CompactMid: {kind: "sleep", sleepMs: 25, count: -1}}},
		{spec: "applyAfterBatch=off", want: map[string]action{ApplyAfterBatch: {kind: "off", count: -1}}},
		{spec: "nosuch=panic", err: "unknown point"},
		{spec: "raftSync", err: "not name=term"},
		{spec: "raftSync=explode", err: "unknown term"},
		{spec: "raftSync=0*panic", err: "bad count"},
		{spec: "raftSync=sleep(x)", err: "bad sleep"},
	} {
		got, err := parseSpec(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q: got %v want %v", tc.spec, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%q: %s = %+v, want %+v", tc.spec, k, got[k], v)
			}
		}
	}
}
