package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// dirLock is an exclusive flock(2) on the store directory, the lock
// Badger's own guard takes (dir_unix.go acquireDirectoryLock), so that a
// Badger of another process, or another Open of the same directory in
// this one, conflicts with it either way. Open takes it before it looks
// for damage and Badger opens with its own guard off (BypassLockGuard):
// the files are checked, moved aside and opened under one lock, never
// while another process writes them, and the store is never moved from
// under a process that uses it. Close releases it.
// TestOpenLeavesALockedStoreAlone pins it.
type dirLock struct {
	dir string
	f   *os.File
}

// lockDir takes the lock of dir. A lock held elsewhere fails with an error
// wrapping syscall.EWOULDBLOCK.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open the store dir to lock it: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the store at %s is in use: another process (or another open store in this one) holds its lock: %w", dir, err)
		}
		return nil, fmt.Errorf("lock the store dir %s: %w", dir, err)
	}
	return &dirLock{dir: dir, f: f}, nil
}

// relock moves the lock to the directory now at the lock's path (after the
// locked one was renamed away).
func (l *dirLock) relock() error {
	next, err := lockDir(l.dir)
	if err != nil {
		return err
	}
	l.release()
	*l = *next
	return nil
}

// release drops the lock: closing the descriptor releases the flock.
func (l *dirLock) release() {
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}
