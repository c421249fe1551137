package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"go.etcd.io/raft/v3/raftpb"
)

func TestManifestRoundTrip(t *testing.T) {
	for _, files := range [][]manifestFile{
		{},
		{{Name: "CURRENT", Size: 16}},
		{{Name: "000001.sst", Size: 1 << 40}, {Name: "MANIFEST-000002", Size: 0}, {Name: strings.Repeat("n", maxSnapshotFileNameBytes), Size: 3}},
	} {
		got, err := decodeManifest(encodeManifest(files))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, files) {
			t.Fatalf("got %v, want %v", got, files)
		}
	}
}

func TestManifestRejects(t *testing.T) {
	good := encodeManifest([]manifestFile{{Name: "a", Size: 1}})
	flipped := slices.Clone(good)
	flipped[5] ^= 1
	// reseal re-checksums a hand-made body.
	reseal := func(body []byte) []byte {
		return binary.BigEndian.AppendUint64(body, xxhash.Sum64(body))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:5], ErrBadFrame},
		{"checksum", flipped, ErrSnapshotChecksum},
		{"dot-dot", encodeManifest([]manifestFile{{Name: "..", Size: 1}}), ErrBadFrame},
		{"slash", encodeManifest([]manifestFile{{Name: "a/b", Size: 1}}), ErrBadFrame},
		{"empty name", encodeManifest([]manifestFile{{Name: "", Size: 1}}), ErrBadFrame},
		{"long name", encodeManifest([]manifestFile{{Name: strings.Repeat("n", maxSnapshotFileNameBytes+1), Size: 1}}), ErrBadFrame},
		{"negative size", encodeManifest([]manifestFile{{Name: "a", Size: -1}}), ErrBadFrame},
		{"duplicate", encodeManifest([]manifestFile{{Name: "a", Size: 1}, {Name: "a", Size: 2}}), ErrBadFrame},
		{"count too big", reseal(binary.BigEndian.AppendUint32(nil, 1000)), ErrBadFrame},
		{"trailing bytes", reseal(append(slices.Clone(good[:len(good)-8]), 0)), ErrBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeManifest(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFrameReader(t *testing.T) {
	m := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: []byte("hello")}}}
	var b []byte
	b = appendMsgFrame(b, frameMsg, &m)
	b = appendFrameHeader(b, framePing, 3)
	b = append(b, 1, 2, 3)
	fr := newFrameReader(bytes.NewReader(b), 64)
	typ, p, err := fr.next()
	if err != nil || typ != frameMsg {
		t.Fatalf("first frame: %v %v", typ, err)
	}
	var got raftpb.Message
	if err := got.Unmarshal(p); err != nil || string(got.Entries[0].Data) != "hello" {
		t.Fatalf("unmarshal: %v %+v", err, got)
	}
	if typ, p, err = fr.next(); err != nil || typ != framePing || !bytes.Equal(p, []byte{1, 2, 3}) {
		t.Fatalf("second frame: %v %v %v", typ, p, err)
	}
	if _, _, err = fr.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	// Over the limit: refused before the payload is read.
	big := appendFrameHeader(nil, frameMsg, 65)
	if _, _, err := newFrameReader(bytes.NewReader(big), 64).next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	// Truncated payload.
	if _, _, err := newFrameReader(bytes.NewReader(b[:len(b)-1]), 64).next(); err != nil {
		t.Fatalf("first frame of truncated input: %v", err)
	}
	trunc := newFrameReader(bytes.NewReader(b[:len(b)-1]), 64)
	_, _, _ = trunc.next()
	if _, _, err := trunc.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	// Wrong type where one is expected.
	if _, err := newFrameReader(bytes.NewReader(b), 64).expect(frameSnapMsg, 64); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("unexpected type: %v", err)
	}
}

// An inbound stream frame over MaxMessageBytes breaks the stream.
func TestInboundFrameTooLarge(t *testing.T) {
	cfg := testConfig(t, 2, 7)
	cfg.MaxMessageBytes = 1024
	b := newMember(t, cfg, "", true)
	a := newMember(t, testConfig(t, 1, 7), "", true)
	connect(a, b)
	a.tr.Send(apps(1, 2, 1, 10))
	waitFor(t, waitTimeout, "small message", func() bool { return len(b.raft.from(1)) == 1 })
	before := a.raft.unreachableCount(2)
	a.tr.Send(apps(1, 2, 1, 2048)) // b refuses the frame and cuts the stream
	waitFor(t, waitTimeout, "stream cut", func() bool { return a.raft.unreachableCount(2) > before })
	a.tr.Send(apps(1, 2, 1, 10)) // the redialed stream works
	waitFor(t, waitTimeout, "small message after", func() bool { return len(b.raft.from(1)) == 2 })
	for _, m := range b.raft.from(1) {
		if len(m.Entries[0].Data) != 10 {
			t.Fatalf("oversized message delivered")
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest(nil))
	f.Add(encodeManifest([]manifestFile{{Name: "CURRENT", Size: 16}, {Name: "000001.sst", Size: 1 << 20}}))
	f.Add([]byte{0, 0, 0, 1, 0, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := decodeManifest(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes and hold only
		// safe names.
		if !bytes.Equal(encodeManifest(files), b) {
			t.Fatalf("re-encoding differs")
		}
		for _, mf := range files {
			if checkFileName(mf.Name) != nil || mf.Size < 0 {
				t.Fatalf("accepted %+v", mf)
			}
		}
	})
}

func FuzzFrameReader(f *testing.F) {
	m := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 3}
	f.Add(appendMsgFrame(nil, frameMsg, &m))
	f.Add(appendFrameHeader(nil, framePing, 8))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b), 256)
		for {
			_, p, err := fr.next()
			if err != nil {
				return
			}
			if len(p) > 256 {
				t.Fatalf("payload of %d bytes over the limit", len(p))
			}
			var m raftpb.Message
			_ = m.Unmarshal(p)
		}
	})
}
