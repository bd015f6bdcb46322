package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// Config says where the database lives and how much memory it may use.
type Config struct {
	// Dir is the database directory; it is created if missing.
	Dir string
	// MemTableSize bounds each memtable; two are kept. 0 means 32 MiB.
	MemTableSize int64
	// BlockCacheSize bounds the block cache. 0 means 32 MiB.
	BlockCacheSize int64
	Logger         *slog.Logger
}

// DB is the Badger database behind every Partition of one instance.
type DB struct {
	db  *badger.DB
	log *slog.Logger
}

// Open opens (or creates) the database. A database that Badger cannot open
// because its files are damaged is moved aside and replaced by an empty
// one: its tasks are then restored from their changelogs.
func Open(cfg Config) (*DB, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MemTableSize == 0 {
		cfg.MemTableSize = 32 << 20
	}
	if cfg.BlockCacheSize == 0 {
		cfg.BlockCacheSize = 32 << 20
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	opts := badger.DefaultOptions(cfg.Dir).
		WithLogger(badgerLogger{cfg.Logger}).
		WithMemTableSize(cfg.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithBlockCacheSize(cfg.BlockCacheSize).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		if errors.Is(err, badger.ErrTruncateNeeded) || isDamage(err) {
			aside := cfg.Dir + ".damaged"
			cfg.Logger.Warn("state store damaged: moving it aside, its tasks restore from the changelog",
				"dir", cfg.Dir, "aside", aside, "error", err)
			_ = os.RemoveAll(aside)
			if rerr := os.Rename(cfg.Dir, aside); rerr != nil {
				return nil, fmt.Errorf("move damaged store aside: %w (open: %v)", rerr, err)
			}
			if err2 := os.MkdirAll(cfg.Dir, 0o755); err2 != nil {
				return nil, fmt.Errorf("recreate state dir: %w", err2)
			}
			db, err = badger.Open(opts)
		}
		if err != nil {
			return nil, fmt.Errorf("open badger at %s: %w", cfg.Dir, err)
		}
	}
	return &DB{db: db, log: cfg.Logger}, nil
}

// isDamage reports whether an open error means damaged files rather than,
// say, a directory locked by another process (which must not be wiped).
func isDamage(err error) bool {
	msg := err.Error()
	for _, s := range []string{"checksum", "corrupt", "truncate", "MANIFEST", "unexpected EOF", "magic", "bad magic", "file does not exist", "no such file"} {
		if bytes.Contains([]byte(msg), []byte(s)) {
			return true
		}
	}
	return false
}

// Close flushes and closes the database.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close badger: %w", err)
	}
	return nil
}

// Partition returns the store of task p. It is cheap; any number may exist.
func (d *DB) Partition(p int32) *Partition {
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix, uint32(p))
	prefix[4] = 'k'
	meta := make([]byte, 5, 16)
	copy(meta, prefix)
	meta[4] = 'm'
	return &Partition{db: d.db, id: p, keyPrefix: prefix, checkpointKey: append(meta, "checkpoint"...)}
}

// Size reports the on-disk bytes of the LSM tree and the value log.
func (d *DB) Size() (lsm, vlog int64) { return d.db.Size() }

// Partitions lists the partitions that have a checkpoint on disk.
func (d *DB) Partitions() ([]int32, error) {
	var out []int32
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			k := it.Item().Key()
			if len(k) < 5 {
				it.Next()
				continue
			}
			p := int32(binary.BigEndian.Uint32(k[:4]))
			out = append(out, p)
			next := make([]byte, 4)
			binary.BigEndian.PutUint32(next, uint32(p)+1)
			if uint32(p) == ^uint32(0) {
				break
			}
			it.Seek(next)
		}
		return nil
	})
	return out, err
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Debugf(f string, a ...any)   {}

func trim(s string) string { return string(bytes.TrimSpace([]byte(s))) }

// dirOf is where an instance keeps the database of a store.
func DirOf(stateDir, applicationID, store string) string {
	return filepath.Join(stateDir, applicationID, store)
}

// KeysEstimate estimates the keys on disk (all versions, all partitions)
// from the LSM tables' key counts; memtables are not included.
func (d *DB) KeysEstimate() int64 {
	var n int64
	for _, t := range d.db.Tables() {
		n += int64(t.KeyCount)
	}
	return n
}
