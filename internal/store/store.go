package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
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
}

// Open opens (or creates) the database. A database whose files are
// damaged is moved aside (to Dir + ".damaged", replacing an older one) and
// replaced by an empty one, with a warning naming the damage: its tasks are
// then restored from their changelogs. Damage is looked for before Badger
// opens the files (see checkFiles: a missing or torn MANIFEST, a table that
// is missing, truncated or fails its checksums, a write-ahead log with data
// after a corrupt entry), because Badger silently drops data for some of
// these and panics in its own goroutines on others; and in Badger's open
// error. A directory locked by another process is never moved. On a file
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
		// A block read from disk is checked against its checksum, so a
		// table damaged after the open is a read error, never a wrong count.
		// (Not OnTableRead: with it Badger skips a table that fails its
		// checksum at open and carries on without its data; checkFiles
		// verifies every table before Badger sees it instead.)
		WithChecksumVerificationMode(options.OnBlockRead)
	moveAside := func(why error) error {
		aside := cfg.Dir + ".damaged"
		cfg.Logger.Warn("state store damaged: moving it aside, its tasks restore from the changelog",
			"dir", cfg.Dir, "aside", aside, "error", why)
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("remove older damaged store %s: %w (damage: %v)", aside, err, why)
		}
		if err := os.Rename(cfg.Dir, aside); err != nil {
			return fmt.Errorf("move damaged store aside: %w (damage: %v)", err, why)
		}
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return fmt.Errorf("recreate state dir: %w", err)
		}
		return nil
	}
	if why := checkFiles(cfg.Dir, opts); why != nil {
		if err := moveAside(why); err != nil {
			return nil, err
		}
	}
	db, err := openBadger(opts)
	if err != nil && isDamage(err) {
		if err := moveAside(err); err != nil {
			return nil, err
		}
		db, err = openBadger(opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open badger at %s: %w", cfg.Dir, err)
	}
	return &DB{db: db, log: cfg.Logger, space: space}, nil
}

// openBadger is badger.Open with a panic on this goroutine turned into an
// error (Badger panics on some damaged files instead of failing). A fault
// reading its memory-mapped files is not damage: a full disk does that (a
// tmpfs allocates the pages of a sparse file it maps, and has none), and
// moving the store aside would only fill the disk with a copy.
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// With SetPanicOnFault a fault's panic value has an Addr method.
			if _, fault := r.(interface{ Addr() uintptr }); fault {
				err = fmt.Errorf("%w (is the disk full?): %v", errFault, r)
				return
			}
			err = fmt.Errorf("%w: badger panicked opening the store: %v", errDamaged, r)
		}
	}()
	return badger.Open(opts)
}

// errDamaged marks what checkFiles and openBadger find.
var errDamaged = errors.New("damaged store files")

// errFault marks a memory fault reading the store's mapped files, which a
// full disk causes: not damage.
var errFault = errors.New("badger faulted reading its memory-mapped files")

// isDamage reports whether an open error means damaged files rather than,
// say, a directory locked by another process (which must not be wiped) or
// a full disk (which wiping would not mend).
func isDamage(err error) bool {
	if errors.Is(err, errFault) {
		return false
	}
	if errors.Is(err, errDamaged) || errors.Is(err, badger.ErrTruncateNeeded) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"Cannot acquire directory lock", "another process is using this Badger database",
		"no space left on device", "disk quota exceeded", "read-only file system", "permission denied", "too many open files"} {
		if strings.Contains(msg, s) {
			return false
		}
	}
	for _, s := range []string{"checksum", "corrupt", "truncate", "MANIFEST", "manifest", "unexpected EOF", "magic",
		"file does not exist", "no such file", "Unable to read header", "Invalid", "invalid", "failed to initialize table",
		"while opening fid", "Level validation", "datakey", "Encryption key mismatch", "malformed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkFiles looks for damage Badger would not report, or would report by
// panicking in a goroutine of its own (which no recover can catch) or by
// silently dropping data:
//   - table or log files but no MANIFEST: Badger would start a new MANIFEST
//     and delete every table as unreferenced;
//   - a MANIFEST that does not replay to its end: Badger would truncate it
//     and delete the tables of the lost entries;
//   - a table the MANIFEST names that is missing, cannot be opened or fails
//     its checksums (Badger panics on a truncated table and skips one that
//     fails its checksum);
//   - a write-ahead log (.mem) with data after a corrupt entry: Badger
//     would replay it only up to that entry and go on with the next log,
//     leaving a hole in the middle of the committed history.
//
// It returns nil for an empty or new directory.
func checkFiles(dir string, opts badger.Options) (err error) {
	// Tables and logs are read through memory maps: an I/O error there is a
	// SIGBUS, which this turns into a panic that checkTable recovers from
	// (and which would otherwise crash the process on every start).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading the store's files failed: %v", errDamaged, firstLine(r))
		}
	}()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // Badger reports what it cannot read
	}
	var tables, logs, mems []string
	hasManifest := false
	for _, e := range entries {
		switch name := e.Name(); {
		case name == badger.ManifestFilename:
			hasManifest = true
		case strings.HasSuffix(name, ".sst"):
			tables = append(tables, name)
		case strings.HasSuffix(name, ".vlog"):
			logs = append(logs, name)
		case strings.HasSuffix(name, ".mem"):
			mems = append(mems, name)
		}
	}
	if !hasManifest {
		if n := len(tables) + len(mems) + len(logs); n > 0 {
			return fmt.Errorf("%w: MANIFEST is missing but %d table and log files are there", errDamaged, n)
		}
		return nil
	}
	manifest, err := replayManifest(filepath.Join(dir, badger.ManifestFilename), opts)
	if err != nil {
		return err
	}
	for id, tm := range manifest.Tables {
		if err := checkTable(dir, id, tm, opts); err != nil {
			return err
		}
	}
	slices.Sort(mems) // by number: the names are zero-padded
	for i, name := range mems {
		if err := checkWAL(filepath.Join(dir, name), i == len(mems)-1); err != nil {
			return err
		}
	}
	return nil
}

// replayManifest reads the MANIFEST as Badger will, and fails unless every
// byte of it is a complete entry.
func replayManifest(path string, opts badger.Options) (badger.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("%w: open MANIFEST: %v", errDamaged, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("%w: stat MANIFEST: %v", errDamaged, err)
	}
	m, end, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("%w: MANIFEST does not replay: %v", errDamaged, err)
	}
	if end != fi.Size() {
		return badger.Manifest{}, fmt.Errorf("%w: MANIFEST ends in a partial entry at byte %d of %d (truncated or torn)", errDamaged, end, fi.Size())
	}
	return m, nil
}

// checkTable opens table id read-only and verifies every block's checksum,
// turning a panic of Badger's table code into an error.
func checkTable(dir string, id uint64, tm badger.TableManifest, opts badger.Options) (err error) {
	path := table.NewFilename(id, dir)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: table %s named by the MANIFEST: %v", errDamaged, filepath.Base(path), err)
	}
	if tm.KeyID != 0 {
		return nil // encrypted tables are not ours to read without the key
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: table %s is empty", errDamaged, filepath.Base(path))
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("%w: open table %s: %v", errDamaged, filepath.Base(path), err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: table %s is unreadable: %v", errDamaged, filepath.Base(path), firstLine(r))
		}
		_ = mf.Close(-1)
	}()
	_, err = table.OpenTable(mf, table.Options{
		ReadOnly: true, ChkMode: options.OnTableRead, BlockSize: opts.BlockSize,
		BloomFalsePositive: opts.BloomFalsePositive, Compression: tm.Compression,
		ZSTDCompressionLevel: opts.ZSTDCompressionLevel, TableSize: uint64(opts.BaseTableSize),
	})
	if err != nil {
		return fmt.Errorf("%w: table %s: %v", errDamaged, filepath.Base(path), err)
	}
	return nil
}

func firstLine(v any) string {
	s := strings.TrimSpace(fmt.Sprint(v))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
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
	return &Partition{db: d.db, space: d.space, id: p, keyPrefix: prefix, checkpointKey: append(meta, "checkpoint"...)}
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
