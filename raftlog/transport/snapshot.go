package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine/failpoint"
)

// ErrFaultDropped is the failure of a snapshot that Faults.Drop dropped.
var ErrFaultDropped = errors.New("transport: dropped by fault injection")

// errFsync marks a failed fsync of a received snapshot. It is not fatal
// here, unlike an fsync failure of the WAL or the engine: nothing of the
// staged directory was acknowledged or will ever be read, because the
// directory is removed whole and the next attempt writes new files. No
// fsync is retried on the same file.
var errFsync = errors.New("transport: fsync of received snapshot failed")

// sendSnapshot starts sending the MsgSnap m unless one is in flight to this
// peer; either way raft hears exactly one ReportSnapshot for m.
func (p *peer) sendSnapshot(m raftpb.Message, drop bool, delay time.Duration) {
	fail := func(err error) {
		p.counters.snapshotsFailed.Add(1)
		p.lg.Warn("snapshot send failed", zap.Uint64("index", snapIndex(&m)), zap.Error(err))
		p.t.raft.ReportSnapshot(p.id, raft.SnapshotFailure)
	}
	if !p.snapshotInFlight.CompareAndSwap(false, true) {
		fail(errors.New("transport: another snapshot to this peer is in flight"))
		return
	}
	started := p.goTracked(func() {
		start := time.Now()
		n, err := p.streamSnapshot(&m, drop, delay)
		// Clear the flag before reporting: raft may answer a failure with a
		// new MsgSnap at once, and it must not find this one in flight.
		p.snapshotInFlight.Store(false)
		if err != nil {
			fail(err)
			return
		}
		p.counters.snapshotsSent.Add(1)
		p.lg.Info("sent snapshot", zap.Uint64("index", snapIndex(&m)),
			zap.Int64("bytes", n), zap.Duration("took", time.Since(start)))
		p.t.raft.ReportSnapshot(p.id, raft.SnapshotFinish)
	})
	if !started {
		p.snapshotInFlight.Store(false)
		fail(ErrStopped)
	}
}

func snapIndex(m *raftpb.Message) uint64 {
	if m.Snapshot == nil {
		return 0
	}
	return m.Snapshot.Metadata.Index
}

// streamSnapshot sends m and its snapshot directory in one request and
// waits for the receiver's verdict. It returns the file bytes sent.
func (p *peer) streamSnapshot(m *raftpb.Message, drop bool, delay time.Duration) (int64, error) {
	if drop {
		return 0, ErrFaultDropped
	}
	if delay > 0 && !sleep(p.ctx, delay) {
		return 0, ErrStopped
	}
	if m.Snapshot == nil {
		return 0, fmt.Errorf("%w: MsgSnap without a snapshot", ErrBadFrame)
	}
	if size := m.Size(); size > p.t.cfg.MaxMessageBytes {
		return 0, fmt.Errorf("%w: MsgSnap of %d bytes, MaxMessageBytes %d", ErrFrameTooLarge, size, p.t.cfg.MaxMessageBytes)
	}
	url := p.currentURL()
	if url == "" {
		return 0, errNoURL
	}
	dir, release, err := p.t.src.OpenSnapshot(*m)
	if err != nil {
		return 0, fmt.Errorf("transport: open snapshot: %w", err)
	}
	defer release()
	files, err := listSnapshotFiles(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}

	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+snapshotPath, pr)
	if err != nil {
		return 0, fmt.Errorf("transport: snapshot request to %s: %w", url, err)
	}
	p.t.setRequestHeaders(req.Header, p.id)

	type written struct {
		err error
		ack *time.Timer // cancels the request if the answer takes too long
	}
	wrote := make(chan written, 1)
	go func() {
		err := p.writeSnapshot(pw, m, dir, files)
		_ = pw.CloseWithError(err) // nil: the receiver sees EOF after the end frame
		var ack *time.Timer
		if err == nil {
			ack = time.AfterFunc(snapshotAckTimeout, cancel)
		}
		wrote <- written{err: err, ack: ack}
	}()
	resp, err := p.t.snapshotRT.RoundTrip(req)
	if err != nil && isHTTP1Answer(err) {
		err = fmt.Errorf("%w: %s: %v", ErrNotHTTP2, url, err)
	}
	if err == nil {
		if resp.StatusCode != http.StatusNoContent {
			err = errorFromResponse(resp)
		}
		_ = resp.Body.Close()
	}
	closeErr := err
	if err != nil {
		// The receiver gave up, maybe before reading everything: unblock
		// the writer.
		_ = pr.CloseWithError(err)
	}
	w := <-wrote
	if w.ack != nil && !w.ack.Stop() && err != nil {
		err = fmt.Errorf("transport: no answer to snapshot within %v: %w", snapshotAckTimeout, err)
	}
	// The writer's error is the cause unless it only echoes the request's
	// failure (our CloseWithError above, or the client closing the body).
	if w.err != nil && w.err != closeErr && !errors.Is(w.err, io.ErrClosedPipe) {
		if err != nil {
			return 0, fmt.Errorf("%w (request: %v)", w.err, err)
		}
		return 0, w.err
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// listSnapshotFiles lists dir's files in name order. A snapshot is a flat
// directory: any other entry is ErrSnapshotLayout.
func listSnapshotFiles(dir string) ([]manifestFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("transport: read snapshot dir: %w", err)
	}
	files := make([]manifestFile, 0, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%w: %s is %v", ErrSnapshotLayout, filepath.Join(dir, e.Name()), e.Type())
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("transport: stat snapshot file: %w", err)
		}
		if err := checkFileName(e.Name()); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSnapshotLayout, err)
		}
		files = append(files, manifestFile{Name: e.Name(), Size: info.Size()})
	}
	if len(files) > maxSnapshotFiles {
		return nil, fmt.Errorf("%w: %d files, limit %d", ErrSnapshotLayout, len(files), maxSnapshotFiles)
	}
	return files, nil
}

// writeSnapshot writes the snapshot body into w, holding one chunk in
// memory.
func (p *peer) writeSnapshot(w *io.PipeWriter, m *raftpb.Message, dir string, files []manifestFile) error {
	cfg := &p.t.cfg
	// buf is the one chunk buffer: a frame header, then the chunk.
	buf := make([]byte, frameHeaderBytes+cfg.SnapshotChunkBytes)
	timer := time.AfterFunc(time.Hour, func() { _ = w.CloseWithError(ErrWriteTimeout) })
	defer timer.Stop()
	write := func(b []byte) error {
		timer.Reset(cfg.IdleTimeout)
		_, err := w.Write(b)
		if !timer.Stop() {
			err = ErrWriteTimeout // the Write itself saw a closed pipe
		}
		if err == nil {
			p.counters.bytesSent.Add(uint64(len(b)))
		}
		return err
	}

	if err := write(appendMsgFrame(nil, frameSnapMsg, m)); err != nil {
		return err
	}
	manifest := encodeManifest(files)
	if len(manifest) > cfg.MaxMessageBytes {
		return fmt.Errorf("%w: manifest of %d bytes, MaxMessageBytes %d", ErrFrameTooLarge, len(manifest), cfg.MaxMessageBytes)
	}
	if err := write(append(appendFrameHeader(nil, frameSnapManifest, len(manifest)), manifest...)); err != nil {
		return err
	}
	corrupt := p.t.faults.corruptSnapshot(p.id)
	for i, mf := range files {
		if failpoint.Enabled && i == len(files)/2 {
			if err := failpoint.Inject(failpoint.SnapshotSendMid); err != nil {
				return err
			}
		}
		sum, err := p.writeSnapshotFile(filepath.Join(dir, mf.Name), mf.Size, buf, write, &corrupt)
		if err != nil {
			return err
		}
		end := appendFrameHeader(buf[:0], frameSnapFileEnd, 8)
		if err := write(binary.BigEndian.AppendUint64(end, sum)); err != nil {
			return err
		}
	}
	return write(appendFrameHeader(buf[:0], frameSnapEnd, 0))
}

// writeSnapshotFile writes size bytes of path as chunk frames and returns
// their xxhash64. If *corrupt, it flips a byte of the first chunk after
// hashing it, and clears *corrupt.
func (p *peer) writeSnapshotFile(path string, size int64, buf []byte, write func([]byte) error, corrupt *bool) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("transport: open snapshot file: %w", err)
	}
	defer f.Close()
	h := xxhash.New()
	chunkBytes := len(buf) - frameHeaderBytes
	for left := size; left > 0; {
		n := int(min(int64(chunkBytes), left))
		data := buf[frameHeaderBytes : frameHeaderBytes+n]
		if _, err := io.ReadFull(f, data); err != nil {
			return 0, fmt.Errorf("transport: read snapshot file %s: %w", path, err)
		}
		_, _ = h.Write(data)
		if *corrupt {
			data[0] ^= 0xff
			*corrupt = false
		}
		appendFrameHeader(buf[:0], frameSnapChunk, n)
		if err := write(buf[:frameHeaderBytes+n]); err != nil {
			return 0, err
		}
		left -= int64(n)
	}
	return h.Sum64(), nil
}

// serveSnapshot receives a snapshot: stage, verify, fsync, rename, then the
// sink and raft. The answer is 204 only if all of that succeeded.
func (t *Transport) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	p, code, err := t.admit(r)
	if err != nil {
		writeError(w, err, code)
		return
	}
	select {
	case t.snapshotSlots <- struct{}{}:
		defer func() { <-t.snapshotSlots }()
	default:
		writeError(w, ErrSnapshotBusy, http.StatusServiceUnavailable)
		return
	}
	d := newDeadlines(w, t.cfg.IdleTimeout)
	defer d.finish()
	stop := context.AfterFunc(p.ctx, d.abort)
	defer stop()

	start := time.Now()
	m, dir, n, err := t.receiveSnapshot(p, d, r.Body)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrSnapshotChecksum) || errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
			code = http.StatusBadRequest
		}
		p.lg.Warn("snapshot receive failed", zap.Error(err))
		writeError(w, err, code)
		return
	}
	p.lg.Info("received snapshot", zap.String("dir", dir), zap.Uint64("index", snapIndex(&m)),
		zap.Int64("bytes", n), zap.Duration("took", time.Since(start)))
	if err := t.sink.SnapshotReceived(m, dir); err != nil {
		p.lg.Warn("snapshot sink refused snapshot", zap.String("dir", dir), zap.Error(err))
		_ = os.RemoveAll(dir)
		writeError(w, fmt.Errorf("transport: snapshot sink: %w", err), http.StatusInternalServerError)
		return
	}
	if err := t.raft.Process(p.ctx, m); err != nil {
		p.lg.Warn("raft refused snapshot message", zap.Error(err))
		writeError(w, fmt.Errorf("transport: raft: %w", err), http.StatusInternalServerError)
		return
	}
	p.counters.snapshotsRecved.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// receiveSnapshot reads a snapshot body into SnapshotDir/<term>-<index>.tmp,
// verifies and fsyncs it, and renames it into place. It returns the MsgSnap,
// the final directory and the file bytes received. On error nothing is left
// behind.
func (t *Transport) receiveSnapshot(p *peer, d *deadlines, body io.Reader) (m raftpb.Message, dir string, n int64, err error) {
	cfg := &t.cfg
	fr := newFrameReader(body, cfg.MaxMessageBytes)
	if err := d.extendRead(); err != nil {
		return m, "", 0, err
	}
	b, err := fr.expect(frameSnapMsg, cfg.MaxMessageBytes)
	if err != nil {
		return m, "", 0, err
	}
	p.counters.bytesReceived.Add(uint64(frameHeaderBytes + len(b)))
	if err := m.Unmarshal(b); err != nil {
		return m, "", 0, fmt.Errorf("%w: unmarshal MsgSnap: %v", ErrBadFrame, err)
	}
	if m.Type != raftpb.MsgSnap || m.Snapshot == nil || m.From != p.id || m.To != cfg.LocalID {
		return m, "", 0, fmt.Errorf("%w: %v %x->%x (snapshot %t) on the snapshot endpoint",
			ErrBadFrame, m.Type, m.From, m.To, m.Snapshot != nil)
	}
	md := m.Snapshot.Metadata
	final := filepath.Join(cfg.SnapshotDir, SnapshotDirName(md.Term, md.Index))
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return m, "", 0, fmt.Errorf("transport: clear %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return m, "", 0, fmt.Errorf("transport: stage snapshot: %w", err)
	}
	installed := false
	defer func() {
		if !installed {
			_ = os.RemoveAll(tmp)
		}
	}()

	if err := d.extendRead(); err != nil {
		return m, "", 0, err
	}
	b, err = fr.expect(frameSnapManifest, cfg.MaxMessageBytes)
	if err != nil {
		return m, "", 0, err
	}
	p.counters.bytesReceived.Add(uint64(frameHeaderBytes + len(b)))
	files, err := decodeManifest(b)
	if err != nil {
		return m, "", 0, err
	}
	chunk := make([]byte, cfg.SnapshotChunkBytes) // the one chunk buffer
	for _, f := range files {
		if err := receiveSnapshotFile(fr, d, filepath.Join(tmp, f.Name), f.Size, chunk, &p.counters); err != nil {
			return m, "", 0, fmt.Errorf("file %s: %w", f.Name, err)
		}
		n += f.Size
	}
	if err := d.extendRead(); err != nil {
		return m, "", 0, err
	}
	if _, err := fr.expect(frameSnapEnd, 0); err != nil {
		return m, "", 0, err
	}
	if err := syncDir(tmp); err != nil {
		return m, "", 0, err
	}
	// A complete directory of the same term and index is a retry of a
	// snapshot the sink already took or refused; the new copy replaces it.
	if err := os.RemoveAll(final); err != nil {
		return m, "", 0, fmt.Errorf("transport: replace %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return m, "", 0, fmt.Errorf("transport: install snapshot: %w", err)
	}
	installed = true
	if err := syncDir(cfg.SnapshotDir); err != nil {
		_ = os.RemoveAll(final)
		return m, "", 0, err
	}
	return m, final, n, nil
}

// receiveSnapshotFile writes the chunks of one file to path through chunk,
// checks its size and xxhash64, and fsyncs it.
func receiveSnapshotFile(fr *frameReader, d *deadlines, path string, size int64, chunk []byte, c *peerCounters) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("transport: create: %w", err)
	}
	defer out.Close()
	h := xxhash.New()
	var got int64
	for {
		if err := d.extendRead(); err != nil {
			return err
		}
		typ, n, err := fr.header(maxSnapshotChunkBytes)
		if err != nil {
			return unexpectedEOF(err)
		}
		c.bytesReceived.Add(uint64(frameHeaderBytes + n))
		switch typ {
		case frameSnapChunk:
			if got+int64(n) > size {
				return fmt.Errorf("%w: more than the manifest's %d bytes", ErrBadFrame, size)
			}
			for left := n; left > 0; {
				k := min(left, len(chunk))
				if _, err := io.ReadFull(fr.r, chunk[:k]); err != nil {
					return unexpectedEOF(err)
				}
				_, _ = h.Write(chunk[:k])
				if _, err := out.Write(chunk[:k]); err != nil {
					return fmt.Errorf("transport: write: %w", err)
				}
				left -= k
				if err := d.extendRead(); err != nil {
					return err
				}
			}
			got += int64(n)
		case frameSnapFileEnd:
			if n != 8 {
				return fmt.Errorf("%w: file end of %d bytes", ErrBadFrame, n)
			}
			if _, err := io.ReadFull(fr.r, chunk[:8]); err != nil {
				return unexpectedEOF(err)
			}
			if got != size {
				return fmt.Errorf("%w: %d bytes, manifest says %d", ErrBadFrame, got, size)
			}
			if want, sum := binary.BigEndian.Uint64(chunk[:8]), h.Sum64(); sum != want {
				return fmt.Errorf("%w: xxhash %016x, sender's %016x", ErrSnapshotChecksum, sum, want)
			}
			if err := out.Sync(); err != nil {
				return fmt.Errorf("%w: %v", errFsync, err)
			}
			return out.Close()
		default:
			return fmt.Errorf("%w: type %d inside a file", ErrBadFrame, typ)
		}
	}
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("transport: open dir for fsync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: dir %s: %v", errFsync, path, err)
	}
	return nil
}

// SnapshotDirName returns the directory name a snapshot at term and index
// is installed under in Config.SnapshotDir.
func SnapshotDirName(term, index uint64) string { return fmt.Sprintf("%d-%d", term, index) }
