package server

// Disk space. RocksDB answers a full disk (ENOSPC) by failing the write and
// turning the database read-only until it is reopened: there is no
// SstFileManager or DB::Resume in the C API MetaStore links against. So a
// member avoids ENOSPC instead of recovering from it in place:
//
//   - Each diskCheckInterval it samples the free space of its data
//     directory's filesystem. Below the reserve (DiskReserveBytes, raised to
//     minDiskReserveBytes: what RocksDB can take in one step) it refuses writes that
//     add data with etcd's "etcdserver: mvcc: database space exceeded" and
//     raises the NOSPACE alarm through raft (the reserve leaves room to write
//     the alarm, flush memtables and compact). Reads, deletes and compactions
//     still run, as under etcd's quota. When space is back and an operator
//     disarms the alarm (etcdctl alarm disarm), writes resume; disarming
//     while the disk is still short raises the alarm again on the next write.
//   - If a write reaches the disk anyway (space taken faster than sampled,
//     or by another process), the engine write fails and the member stops on
//     purpose: a failed raft log write or fsync is fatal (raftlog), and so is
//     a failed apply write (mvcc.ErrWriteFailed, apply.go), because going on
//     would mark an entry applied without its effects. Nothing acknowledged
//     is lost: a write is acknowledged only after the raft log's fsync, and
//     the data engine replays from the raft log on restart. The member starts
//     again once space is freed.

import (
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
)

// defaultDiskReserveBytes is DiskReserveBytes' default. The reserve in
// force is never below minDiskReserveBytes of the engines' options.
const defaultDiskReserveBytes = 256 << 20

// diskCheckInterval is how often the free space is sampled (a statfs).
const diskCheckInterval = 100 * time.Millisecond

// minDiskReserveBytes is the space RocksDB can take in one step, which a
// sample cannot see coming: per engine, a column family's memtables
// (WriteBufferBytes x MaxWriteBufferNumber) flushed to SST files plus the
// next WAL, which RocksDB preallocates at about one memtable's size. A large
// compaction can need more; then the member stops, as above. `make
// disk-faults` found the need: with only a fixed reserve, a memtable flush
// and a new WAL took 160 MiB between two samples and the member stopped
// instead of raising NOSPACE.
func minDiskReserveBytes(cfg Config) int64 {
	step := func(writeBufferBytes int64, buffers int) int64 { return writeBufferBytes * int64(buffers+1) }
	r := raftEngineOptions()
	return step(int64(cfg.Engine.WriteBufferBytes), cfg.Engine.MaxWriteBufferNumber) +
		step(int64(r.WriteBufferBytes), r.MaxWriteBufferNumber)
}

// diskReserveBytes is the reserve in force: DiskReserveBytes, raised to
// minDiskReserveBytes; 0 when the check is off.
func diskReserveBytes(cfg Config) int64 {
	if cfg.DiskReserveBytes <= 0 {
		return 0
	}
	return max(cfg.DiskReserveBytes, minDiskReserveBytes(cfg))
}

// statfsFreeBytes returns the bytes of dir's filesystem available to an
// unprivileged writer.
func statfsFreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// sampleDisk updates diskLow from the data directory's free space and
// raises NOSPACE when it falls below the reserve.
func (a *alarmStore) sampleDisk() {
	reserve := diskReserveBytes(a.s.cfg)
	if reserve <= 0 {
		return
	}
	freeBytes := statfsFreeBytes
	if a.s.cfg.diskFreeBytes != nil {
		freeBytes = a.s.cfg.diskFreeBytes
	}
	free, err := freeBytes(a.s.cfg.DataDir)
	if err != nil {
		a.s.lg.Warn("cannot read the data directory's free space", zap.String("data-dir", a.s.cfg.DataDir), zap.Error(err))
		return
	}
	low := free < uint64(reserve)
	if low && !a.diskLow.Swap(true) {
		a.s.lg.Warn("free disk space below the reserve; refusing writes",
			zap.String("data-dir", a.s.cfg.DataDir), zap.Uint64("free-bytes", free), zap.Int64("reserve-bytes", reserve))
	} else if !low && a.diskLow.Swap(false) {
		a.s.lg.Info("free disk space back above the reserve; writes resume once NOSPACE is disarmed",
			zap.Uint64("free-bytes", free), zap.Int64("reserve-bytes", reserve))
	}
	if low && !a.active(pb.AlarmType_NOSPACE) && a.s.node != nil {
		a.raise(pb.AlarmType_NOSPACE)
	}
}
