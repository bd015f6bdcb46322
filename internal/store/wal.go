package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// walHeaderBytes is the header of a Badger log file (key id and IV).
const walHeaderBytes = 20

// Bits of a log entry's meta byte that frame transactions (Badger's bitTxn
// and bitFinTxn): each entry of a transaction carries bitTxn and the
// transaction's commit timestamp in its key; a last entry with bitFinTxn
// and that timestamp as its value commits them all.
const (
	walBitTxn    = 1 << 6
	walBitFinTxn = 1 << 7
)

// checkWAL walks a memtable's write-ahead log as Badger's replay does (an
// entry: meta, user meta, uvarint key length, value length and expiry, key,
// value, CRC-32C of all that), transaction by transaction, to the first
// entry that does not check out or does not fit the transaction it is in.
// Badger replays the complete transactions before that point and drops
// the rest. Every such prefix of the log is a committed state, so that is
// safe when nothing valid follows in the newest log: a crash's torn last
// write, or damage at the log's end, only takes the store back to an older
// checkpoint, which the restore from the changelog makes up.
//
// It is not safe when valid entries follow the bad one (a hole in the
// middle of the history), nor when an older log, which newer logs follow,
// lost anything: Badger writes a transaction whole into one log and only
// ever tears the newest, so an older log must end exactly where its last
// transaction does. A cut that happens to fall between two entries of a
// transaction is such a loss too, though every entry before it checks out.
func checkWAL(path string, newest bool) error {
	name := filepath.Base(path)
	// The whole preallocated file is read with read(2), zeros and all: the
	// end of the written part is found from the entries, never from where
	// the file system says a hole starts (a hole in the middle of a log
	// would hide whatever follows it). Reading a hole allocates nothing,
	// even on a full tmpfs, where a memory map of it faults.
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read write-ahead log %s: %w", name, err) // the system's error: no proof of damage
	}
	if len(data) < walHeaderBytes {
		return nil // Badger rewrites a log this short
	}
	if binary.BigEndian.Uint64(data[:8]) != 0 {
		// The header's key id: abacus never encrypts, so Badger would look
		// for a key it does not have.
		return fmt.Errorf("%w: write-ahead log %s has a damaged header", errDamaged, name)
	}
	committed, stop := walReplayEnd(data)
	last := lastNonZero(data, stop)
	switch {
	case !newest && committed < stop:
		return fmt.Errorf("%w: write-ahead log %s, followed by newer ones, ends inside a transaction begun at byte %d (truncated)",
			errDamaged, name, committed)
	case last < stop:
		return nil // the log ends in zeros after its last entry
	case !newest:
		return fmt.Errorf("%w: write-ahead log %s, followed by newer ones, has a corrupt entry at byte %d with %d bytes of data after it",
			errDamaged, name, stop, last+1-stop)
	}
	for p := stop + 1; p <= last; p++ {
		if _, _, ok := walEntry(data[p : last+1]); ok {
			return fmt.Errorf("%w: write-ahead log %s has a corrupt entry at byte %d followed by valid ones (at byte %d)",
				errDamaged, name, stop, p)
		}
	}
	return nil
}

// walReplayEnd walks the log's entries as Badger's replay does and returns
// where the last complete transaction ends (what the replay keeps) and
// where the walk stopped: at an entry that is zero, short, fails its
// checksum, or breaks the transaction framing (a new transaction before
// the last one committed, a commit for another transaction).
func walReplayEnd(data []byte) (committed, stop int) {
	committed, stop = walHeaderBytes, walHeaderBytes
	var txnTs uint64 // of the open transaction; 0 between transactions
	for stop < len(data) {
		e, n, ok := walEntry(data[stop:])
		if !ok {
			return committed, stop
		}
		switch {
		case e.meta&walBitTxn != 0:
			ts := keyTs(e.key)
			if txnTs == 0 {
				txnTs = ts
			}
			if ts != txnTs {
				return committed, stop
			}
		case e.meta&walBitFinTxn != 0:
			ts, err := strconv.ParseUint(string(e.value), 10, 64)
			if err != nil || ts != txnTs {
				return committed, stop
			}
			txnTs = 0
			committed = stop + n
		default:
			if txnTs != 0 {
				return committed, stop
			}
			committed = stop + n
		}
		stop += n
	}
	return committed, stop
}

// keyTs is the version Badger appends to a key: the last 8 bytes, as
// MaxUint64 minus the timestamp so that newer versions sort first.
func keyTs(key []byte) uint64 {
	if len(key) < 8 {
		return 0
	}
	return math.MaxUint64 - binary.BigEndian.Uint64(key[len(key)-8:])
}

// lastNonZero is the index of the last byte from from on that is not zero,
// or from-1 if there is none.
func lastNonZero(data []byte, from int) int {
	last := len(data) - 1
	for last >= from+8 && binary.LittleEndian.Uint64(data[last-7:last+1]) == 0 {
		last -= 8
	}
	for last >= from && data[last] == 0 {
		last--
	}
	return last
}

type walRecord struct {
	meta       byte
	key, value []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walEntry checks the entry at the start of b and returns it and its
// length; ok is false at a zero (end) entry or one that is short, has an
// unsound header or fails its checksum.
func walEntry(b []byte) (e walRecord, n int, ok bool) {
	if len(b) < 2 {
		return walRecord{}, 0, false
	}
	pos := 2           // meta and user meta
	var lens [3]uint64 // key, value, expiry
	for i := range lens {
		v, k := binary.Uvarint(b[pos:])
		if k <= 0 {
			return walRecord{}, 0, false
		}
		lens[i] = v
		pos += k
	}
	klen, vlen := lens[0], lens[1]
	if klen == 0 || klen > 1<<16 || vlen > 1<<20 {
		return walRecord{}, 0, false
	}
	valueAt := pos + int(klen)
	end := valueAt + int(vlen)
	n = end + 4
	if n > len(b) || crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:n]) {
		return walRecord{}, 0, false
	}
	return walRecord{meta: b[0], key: b[pos:valueAt], value: b[valueAt:end]}, n, true
}
