package store

import (
	"errors"
	"fmt"
	"syscall"
)

// Badger writes its memtables' write-ahead logs, and the tables it flushes
// them into, through memory maps of files it first extends to their full
// size. A file system out of blocks cannot back a page of such a file
// when it is first written: the process gets SIGBUS, in a goroutine of
// Badger's own, and dies — no error is ever returned. So every write path
// (Open, Commit, a restore's writes, Wipe) first asks the file system for
// its free space and refuses, with an error wrapping syscall.ENOSPC, when
// less than the margin is left. The margin covers what a write can make
// Badger map next: the current log filling up to MemTableSize plus one
// write batch (Badger's batches are 15 % of MemTableSize) before Badger
// switches logs, the flush of the full memtable into a level-0 table of
// up to MemTableSize, and the first writes to the next log; plus slack for
// the MANIFEST and a small compaction. It is a guard, not a reservation:
// another writer on the same file system can still take the space between
// the check and the write, and a compaction of a large store can need more.

// defaultSlack is the margin's room beyond twice the memtable size.
const defaultSlack = 8 << 20

// spaceCheckBytes: a restore asks for the free space again after writing
// about this much (well under the margin, and one statfs per MiB is free).
const spaceCheckBytes = 1 << 20

// DiskFullError reports that the file system of the state dir has less
// free space than a write to the store may need. It wraps syscall.ENOSPC,
// and its text says "no space left on device", as the kernel's does.
type DiskFullError struct {
	Dir  string
	Free uint64 // bytes free for an unprivileged writer
	Need uint64 // the margin the store keeps
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("no space left on device: %s free on the file system of %s, the store needs %s free to write safely",
		mib(e.Free), e.Dir, mib(e.Need))
}

// Unwrap makes errors.Is(err, syscall.ENOSPC) hold.
func (e *DiskFullError) Unwrap() error { return syscall.ENOSPC }

// IsDiskFull reports whether err says the state dir's disk is full, by
// this package's check or by the kernel.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// space checks the free space of one directory's file system.
type space struct {
	dir  string
	need uint64
	// free reports the bytes free; statfs unless a test replaces it.
	free func(dir string) (uint64, error)
}

func newSpace(dir string, need uint64) *space {
	return &space{dir: dir, need: need, free: statfsFree}
}

// check fails with a *DiskFullError when less than the margin is free.
// A file system that cannot say is not taken for a full one.
func (s *space) check() error {
	free, err := s.free(s.dir)
	if err != nil || free >= s.need {
		return nil
	}
	return &DiskFullError{Dir: s.dir, Free: free, Need: s.need}
}

// statfsFree is the space an unprivileged writer may still use (Bavail:
// the blocks root keeps in reserve do not count, though we may be root).
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// CheckSpace fails with a *DiskFullError when the state dir has less free
// space than the store needs to write safely. Commit, Wipe and a restore's
// writes check it themselves; this is for callers deciding whether to
// start work at all.
func (d *DB) CheckSpace() error { return d.space.check() }
