package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2/z"
)

// A store is damaged, and moved aside to be rebuilt from the changelog,
// only on proof: bytes of its files that were read and do not parse or do
// not check out, or a file its MANIFEST names that is gone. Such an error
// wraps errDamaged. Anything else that stops the open (a permission, the
// descriptor limit, a full disk, an I/O error, a file the system will not
// open or read for any other reason, a lock held elsewhere) fails the open
// with the system's error, still an *fs.PathError or syscall.Errno for
// errors.Is and errors.As, and leaves the directory as it is: a store
// that cannot be read for now is no reason to throw its state away, and
// moving it aside would leave it on the disk while a restore writes a
// second copy. TestOpenLeavesAnUnreadableStoreAlone and
// TestOpenLeavesAStoreWithoutFileDescriptorsAlone pin that.
//
// Every file checkFiles hands to Badger's code is first read through with
// read(2) (readThrough), so that an error reading it is the system's,
// typed: Badger's own readers turn one into a content error (ReplayManifestFile
// returns its bad-magic error for any failed read of the MANIFEST's first
// bytes) or, through a memory map, into a fault that its table code
// re-panics as a plain string (table.go initBiggestAndSmallest).

// errDamaged marks proof of damage.
var errDamaged = errors.New("damaged store files")

// errFault marks a memory fault reading the store's mapped files: an I/O
// error, or a full disk (a tmpfs allocates the pages of a sparse file it
// maps, and has none); not damage.
var errFault = errors.New("a memory fault reading the store's mapped files")

// damagef is an error wrapping errDamaged.
func damagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errDamaged, fmt.Sprintf(format, a...))
}

// badgerDamageTexts are the errors of badger.Open (v4.9.6) told by their
// text, for want of a type: Badger wraps with y.Wrap and y.Wrapf
// (y/error.go), which format the cause with %+v instead of %w unless its
// debugMode is on (only Badger's own tests turn it on), so errors.Is cannot
// find even an exported sentinel below them. Each is an error Badger
// returns only after reading a file's bytes and finding them wrong, and one
// that checkFiles cannot see first. (badger.ErrTruncateNeeded, the other
// sentinel of damage, comes only from a read-only open, memtable.go
// UpdateSkipList, and through y.Wrapf too.) Every one is provoked by
// TestOpenMovesAsideDamageOnlyBadgerFinds, which fails when a Badger
// upgrade changes its text.
var badgerDamageTexts = []struct{ text, source string }{
	// util.go levelHandler.validate: fmt.Errorf for two tables of one level
	// whose key ranges overlap, wrapped by levels.go newLevelsController as
	// y.Wrap(err, "Level validation"). The MANIFEST replays and every table
	// checks out, yet together they make no tree.
	{"Level validation", "levels.go newLevelsController"},
	// y.ErrChecksumMismatch ("checksum mismatch", y/checksum.go) through
	// y.Wrapf: a data key of the KEYREGISTRY that fails its CRC
	// (key_registry.go keyRegistryIterator.next). Of the other checksums
	// Badger checks at open, the MANIFEST's and the tables', checkFiles has
	// verified every one with Badger's own code.
	{y.ErrChecksumMismatch.Error(), "key_registry.go keyRegistryIterator.next"},
}

// isDamage reports whether an error of checkFiles or of badger.Open proves
// the store's files damaged.
func isDamage(err error) bool {
	switch {
	case err == nil, errors.Is(err, errFault):
		return false
	case errors.Is(err, errDamaged):
		return true
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		// key_registry.go validRegistry returns it, unwrapped, when the
		// KEYREGISTRY's sanity text is not what it should be: abacus never
		// encrypts, so the text is garbled.
		return true
	case isSystemError(err):
		return false
	}
	msg := err.Error()
	for _, d := range badgerDamageTexts {
		if strings.Contains(msg, d.text) {
			return true
		}
	}
	return false
}

// isSystemError reports whether err is, or wraps, an error of a system
// call: what failed is reaching the bytes, not the bytes.
func isSystemError(err error) bool {
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	var sysErr *os.SyscallError
	var errno syscall.Errno
	return errors.As(err, &pathErr) || errors.As(err, &linkErr) || errors.As(err, &sysErr) || errors.As(err, &errno)
}

// panicError turns a panic recovered while reading the store's files into
// an error: a memory fault is errFault, any other panic (Badger's code on
// bytes it could not make sense of) damage.
func panicError(r any, doing string) error {
	// With debug.SetPanicOnFault a fault's panic value has an Addr method.
	if _, fault := r.(interface{ Addr() uintptr }); fault {
		return fmt.Errorf("%w (%s; an I/O error, or is the disk full?): %v", errFault, doing, firstLine(r))
	}
	return damagef("%s: panic: %v", doing, firstLine(r))
}

// openUndamaged opens Badger on the store that lock holds, after looking
// for damage with checkFiles. A store proven damaged, there or by Badger's
// open, is moved aside and an empty one opened in its place; any other
// error fails the open and leaves the store as it is.
func openUndamaged(opts badger.Options, log *slog.Logger, lock *dirLock) (*badger.DB, error) {
	dir := opts.Dir
	if err := checkFiles(dir, opts); err != nil {
		if !isDamage(err) {
			return nil, fmt.Errorf("open store at %s (left as it is: no proof of damage): %w", dir, err)
		}
		if err := moveAside(err, log, lock); err != nil {
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
// error (Badger panics on some damaged files instead of failing).
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r, "opening the store")
		}
	}()
	return badger.Open(opts)
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
// Its error wraps errDamaged for damage; any other error is the system's,
// wrapped with what was being done on which file. It returns nil for an
// empty or new directory.
func checkFiles(dir string, opts badger.Options) (err error) {
	// Tables are read through memory maps: an I/O error there is a
	// SIGBUS, which this turns into a panic that checkTable recovers from
	// (and which would otherwise crash the process on every start).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r, "reading the store's files")
		}
	}()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list the store's files: %w", err)
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
			return damagef("MANIFEST is missing but %d table and log files are there", n)
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

// readThrough reads a file to its end with read(2), to fail with the
// system's error if any part of it cannot be read. (A table's pages are
// then in the page cache for the checksum pass over its map that follows.)
func readThrough(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// replayManifest reads the MANIFEST as Badger will, and fails unless every
// byte of it is a complete entry.
func replayManifest(path string, opts badger.Options) (badger.Manifest, error) {
	if err := readThrough(path); err != nil {
		return badger.Manifest{}, fmt.Errorf("read MANIFEST: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("open MANIFEST: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("stat MANIFEST: %w", err)
	}
	m, end, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	switch {
	case err != nil && isSystemError(err):
		// Its file's Stat and Read errors come back as they are.
		return badger.Manifest{}, fmt.Errorf("replay MANIFEST: %w", err)
	case err != nil:
		return badger.Manifest{}, damagef("MANIFEST does not replay: %v", err)
	case end != fi.Size():
		return badger.Manifest{}, damagef("MANIFEST ends in a partial entry at byte %d of %d (truncated or torn)", end, fi.Size())
	}
	return m, nil
}

// checkTable opens table id read-only and verifies every block's checksum,
// turning a panic of Badger's table code into an error.
func checkTable(dir string, id uint64, tm badger.TableManifest, opts badger.Options) (err error) {
	path := table.NewFilename(id, dir)
	name := filepath.Base(path)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return damagef("table %s named by the MANIFEST is missing", name)
	case err != nil:
		return fmt.Errorf("stat table %s named by the MANIFEST: %w", name, err)
	}
	if tm.KeyID != 0 {
		return nil // encrypted tables are not ours to read without the key
	}
	if fi.Size() == 0 {
		return damagef("table %s is empty", name)
	}
	if err := readThrough(path); err != nil {
		return fmt.Errorf("read table %s: %w", name, err)
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("map table %s: %w", name, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r, "reading table "+name)
		}
		_ = mf.Close(-1)
	}()
	_, err = table.OpenTable(mf, table.Options{
		ReadOnly: true, ChkMode: options.OnTableRead, BlockSize: opts.BlockSize,
		BloomFalsePositive: opts.BloomFalsePositive, Compression: tm.Compression,
		ZSTDCompressionLevel: opts.ZSTDCompressionLevel, TableSize: uint64(opts.BaseTableSize),
	})
	if err != nil {
		// Its only system call is a Stat of the open file; the rest reads
		// the map, which readThrough has just read.
		return damagef("table %s: %v", name, err)
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
