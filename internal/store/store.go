package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Config says where the database lives and how much memory it may use.
type Config struct {
	// Dir is the database directory; it is created if missing.
	Dir string
	// MemTableSize bounds each memtable; two are kept. 0 means 16 MiB.
	MemTableSize int64
	// BlockCacheSize bounds the block cache. 0 means 16 MiB (hot keys are
	// served from the processor's read cache; this keeps the memory bound).
	BlockCacheSize int64
	// MinFreeBytes is the free space below which the store refuses to
	// write (see space.go). 0 means twice MemTableSize plus 8 MiB; a
	// negative value turns the check off.
	MinFreeBytes int64
	Logger       *slog.Logger
}

// DB is the Badger database behind every Partition of one instance.
type DB struct {
	db    *badger.DB
	log   *slog.Logger
	space *space
	lock  *dirLock
	// wipes holds each partition's wipe counter (Partition.wipes).
	wipes sync.Map // int32 -> *atomic.Uint64
}

// Open opens (or creates) the database. A database whose files are
// damaged is moved aside (to Dir + ".damaged", replacing an older one) and
// replaced by an empty one, with a warning naming the damage: its tasks are
// then restored from their changelogs. Damage is looked for before Badger
// opens the files (see checkFiles: a missing or torn MANIFEST, a table that
// is missing, truncated or fails its checksums, a write-ahead log with data
// after a corrupt entry), because Badger silently drops data for some of
// these and panics in its own goroutines on others; and in Badger's open
// error. Only proof of damage moves a store (see damage.go): a file that
// cannot be opened or read (permissions, the descriptor limit, an I/O
// error) fails the open with the system's error and leaves the store as
// it is. A directory locked by another process is neither checked nor
// moved: Open fails, its error wrapping syscall.EWOULDBLOCK. On a file
// system with less free space than the store needs to write safely, Open
// fails with a *DiskFullError (wrapping syscall.ENOSPC) before Badger maps
// a file: Badger would crash the process writing to one.
func Open(cfg Config) (*DB, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MemTableSize == 0 {
		cfg.MemTableSize = 16 << 20
	}
	if cfg.BlockCacheSize == 0 {
		cfg.BlockCacheSize = 16 << 20
	}
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = 2*cfg.MemTableSize + defaultSlack
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	space := newSpace(cfg.Dir, uint64(max(cfg.MinFreeBytes, 0)))
	if err := space.check(); err != nil {
		return nil, fmt.Errorf("open store at %s: %w", cfg.Dir, err)
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
		WithNumCompactors(2).
		// A block read from disk is checked against its checksum. Most
		// reads of a table damaged after the open then fail; a point
		// lookup does not: Badger's levelHandler.get takes a block that
		// fails its checksum for an absent key (docs/reliability.md,
		// "Damage under a running member"; TestChaosDamageUnderRunningInstance).
		// (Not OnTableRead: with it Badger skips a table that fails its
		// checksum at open and carries on without its data; checkFiles
		// verifies every table before Badger sees it instead.)
		WithChecksumVerificationMode(options.OnBlockRead).
		// Open holds the directory's lock itself (see dirLock).
		WithBypassLockGuard(true)
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open store at %s: %w", cfg.Dir, err)
	}
	db, err := openUndamaged(opts, cfg.Logger, lock)
	if err != nil {
		lock.release()
		return nil, err
	}
	return &DB{db: db, log: cfg.Logger, space: space, lock: lock}, nil
}

// Close flushes and closes the database, and releases its directory.
func (d *DB) Close() error {
	defer d.lock.release()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("close badger: %w", err)
	}
	return nil
}

// Partition returns the store of task p. It is cheap; any number may exist.
func (d *DB) Partition(p int32) *Partition {
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix, uint32(p))
	prefix[4] = countTag
	meta := make([]byte, 5, 16)
	copy(meta, prefix)
	meta[4] = metaTag
	wipes, _ := d.wipes.LoadOrStore(p, new(atomic.Uint64))
	return &Partition{db: d.db, space: d.space, id: p, keyPrefix: prefix, checkpointKey: append(meta, "checkpoint"...),
		wipes: wipes.(*atomic.Uint64)}
}

// Size reports the on-disk bytes of the LSM tree and the value log.
func (d *DB) Size() (lsm, vlog int64) { return d.db.Size() }

// Partitions lists the partitions that have anything on disk: counts,
// windows or a checkpoint.
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

// badgerLogger writes Badger's lines to the store's logger, marked
// logger=badger; its info lines are debug here, its debug lines dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: "+trim(fmt.Sprintf(f, a...)), "logger", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: "+trim(fmt.Sprintf(f, a...)), "logger", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("badger: "+trim(fmt.Sprintf(f, a...)), "logger", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}

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
