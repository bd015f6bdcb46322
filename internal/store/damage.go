package store

import (
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

// openUndamaged opens Badger on the store that lock holds, after looking
// for damage with checkFiles; a store found damaged, there or by Badger's
// open, is moved aside and an empty one opened in its place.
func openUndamaged(opts badger.Options, log *slog.Logger, lock *dirLock) (*badger.DB, error) {
	dir := opts.Dir
	if why := checkFiles(dir, opts); why != nil {
		if err := moveAside(why, log, lock); err != nil {
			return nil, err
		}
	}
	db, err := openBadger(opts)
	if err != nil && isDamage(err) {
		if err := moveAside(err, log, lock); err != nil {
			return nil, err
		}
		db, err = openBadger(opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open badger at %s: %w", dir, err)
	}
	return db, nil
}

// moveAside moves the damaged store that lock holds to its dir+".damaged",
// replacing an older one, with a warning naming the damage, and leaves an
// empty directory in its place, locked.
func moveAside(why error, log *slog.Logger, lock *dirLock) error {
	dir := lock.dir
	aside := dir + ".damaged"
	log.Warn("state store damaged: moving it aside, its tasks restore from the changelog",
		"dir", dir, "aside", aside, "error", why)
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("remove older damaged store %s: %w (damage: %v)", aside, err, why)
	}
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("move damaged store aside: %w (damage: %v)", err, why)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("recreate state dir: %w", err)
	}
	return lock.relock()
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
