package server

import (
	"bytes"
	"testing"
)

// Decoders of the records the server persists in the engine's meta column
// family are strict: whatever decodes re-encodes to the same bytes, and
// nothing panics. Seeds (here and in testdata/fuzz) run in plain `go test`.

func FuzzDecodeAlarmMetaKey(f *testing.F) {
	f.Add([]byte("alarm/8e9e05c52164694d/1"))
	f.Add([]byte("alarm/0000000000000001/2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeAlarmMetaKey(b)
		if err != nil {
			return
		}
		if got := alarmMetaKey(k); !bytes.Equal(got, b) {
			t.Fatalf("decoded %q, re-encoded as %q", b, got)
		}
	})
}

func FuzzDecodeRemovedKey(f *testing.F) {
	f.Add(removedKey(0x8e9e05c52164694d))
	f.Add([]byte("removed/1"))
	f.Add([]byte("removed/+000000000000001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodeRemovedKey(b)
		if err != nil {
			return
		}
		if got := removedKey(id); !bytes.Equal(got, b) {
			t.Fatalf("decoded %q, re-encoded as %q", b, got)
		}
	})
}

// FuzzDecodeMember: a member record that decodes is a member start-up can
// use (an ID and peer URLs), and survives its own encoding unchanged.
func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember(&Member{ID: 0x8e9e05c52164694d, Name: "m1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}))
	f.Add(encodeMember(&Member{ID: 1, PeerURLs: []string{"https://a:1", "https://b:2"}, IsLearner: true}))
	f.Add([]byte(`{"id":0,"peerURLs":["x"]}`))
	f.Add([]byte(`{"id":1,"peerURLs":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMember(b)
		if err != nil {
			return
		}
		if m.ID == 0 || len(m.PeerURLs) == 0 {
			t.Fatalf("decoded an unusable member %+v from %q", m, b)
		}
		again, err := decodeMember(encodeMember(m))
		if err != nil {
			t.Fatalf("re-encoded member %+v does not decode: %v", m, err)
		}
		if !bytes.Equal(encodeMember(again), encodeMember(m)) {
			t.Fatalf("member changed through its encoding: %+v -> %+v", m, again)
		}
	})
}
