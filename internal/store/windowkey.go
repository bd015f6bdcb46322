package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A window key names one window of one key. It is the key of a windowed
// store's entry and, the same bytes, the key of the store's changelog
// records, so its format is a wire format. Version 1:
//
//	format   0x01 (one byte)
//	key      the key's bytes, each 0x00 written as 0x00 0xFF,
//	         then the terminator 0x00 0x01
//	start    the window's start, epoch milliseconds (int64 >= 0, big-endian)
//	end      the window's end, epoch milliseconds (int64 >= start, big-endian)
//
// The byte order of window keys is the order by key (bytes, compared as
// bytes.Compare does), then start, then end: the escaping keeps the order
// of keys, a key that is a prefix of another ends in 0x00 0x01 where the
// longer one goes on with 0x00 0xFF or a byte above 0x00, and non-negative
// times sort as their big-endian bytes (FuzzWindowKey). So the windows of
// one key are adjacent, in the order of their starts, and a scan seeks to
// a key's first window at a given start.
//
// Every window key carries its end, for sessions (several of one key,
// each of its own length) and for tumbling and hopping windows alike,
// whose end a store could derive from the window size: the store finds
// the windows to expire through an index by end, and a key that carries
// its end lets every writer (a commit, a restore from the changelog, a
// peer snapshot) place the index entry from the key alone, with no window
// size configured on the store, and no old window misplaced should a
// later deployment change the size. Whether a store's windows are
// sessions is the store's definition, not each key's.
//
// The format byte lets a later format be told apart: DecodeWindowKey
// refuses a format it does not know rather than read it as this one.

// windowKeyV1 is the format byte of a version 1 window key.
const windowKeyV1 byte = 0x01

// windowKeyTimes is the bytes of the start and the end.
const windowKeyTimes = 16

// ErrWindowKey: bytes that are not a window key this build reads.
var ErrWindowKey = errors.New("not a window key")

// Window is one window of a key: its key and its bounds in epoch
// milliseconds. The store takes End as it is (exclusive for a tumbling
// window, whose End is Start plus the size; a session's may equal its
// Start) and only compares it with the cutoff of ExpireWindows.
type Window struct {
	Key   []byte
	Start int64
	End   int64
}

// WindowCount is a window and its count.
type WindowCount struct {
	Window
	Count int64
}

// EncodeWindowKey is the window key of w. Its times must be valid
// (0 <= Start <= End): the bytes of other ones are refused by
// DecodeWindowKey, and so by every store write, which decodes them.
func EncodeWindowKey(w Window) []byte {
	b := make([]byte, 0, 1+len(w.Key)+2+windowKeyTimes+escapedZeros(w.Key))
	b = appendWindowKeyPrefix(b, w.Key)
	b = binary.BigEndian.AppendUint64(b, uint64(w.Start))
	return binary.BigEndian.AppendUint64(b, uint64(w.End))
}

// DecodeWindowKey reads a window key. It fails, wrapping ErrWindowKey, on
// an unknown format, a malformed key, or times that are negative or end
// before they start.
func DecodeWindowKey(b []byte) (Window, error) {
	keyEnd, start, end, err := parseWindowKey(b)
	if err != nil {
		return Window{}, err
	}
	key := make([]byte, 0, keyEnd-1)
	for i := 1; i < keyEnd; i++ {
		key = append(key, b[i])
		if b[i] == 0x00 {
			i++ // the 0xFF after an escaped 0x00
		}
	}
	return Window{Key: key, Start: start, End: end}, nil
}

// parseWindowKey checks a window key and returns where its escaped key
// ends (the index of the terminator) and its times.
func parseWindowKey[B ~string | ~[]byte](b B) (keyEnd int, start, end int64, err error) {
	if len(b) == 0 {
		return 0, 0, 0, fmt.Errorf("%w: empty", ErrWindowKey)
	}
	if b[0] != windowKeyV1 {
		return 0, 0, 0, fmt.Errorf("%w: format %#02x is unknown (this build reads format %#02x)", ErrWindowKey, b[0], windowKeyV1)
	}
	for i := 1; ; i++ {
		if i+1 >= len(b) {
			return 0, 0, 0, fmt.Errorf("%w: the key has no terminator", ErrWindowKey)
		}
		if b[i] != 0x00 {
			continue
		}
		if b[i+1] == 0x01 {
			keyEnd = i
			break
		}
		if b[i+1] != 0xFF {
			return 0, 0, 0, fmt.Errorf("%w: byte %#02x after a 0x00 at %d of the key", ErrWindowKey, b[i+1], i)
		}
		i++
	}
	times := b[keyEnd+2:]
	if len(times) != windowKeyTimes {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes after the key, not the %d of a start and an end", ErrWindowKey, len(times), windowKeyTimes)
	}
	start, end = int64(bigEndian64(times)), int64(bigEndian64(times[8:]))
	if start < 0 || end < start {
		return 0, 0, 0, fmt.Errorf("%w: a window from %d to %d (times are >= 0, and the end is not before the start)", ErrWindowKey, start, end)
	}
	return keyEnd, start, end, nil
}

// windowKeyEnd is the end of the window key b, which parseWindowKey took.
func windowKeyEnd[B ~string | ~[]byte](b B) int64 { return int64(bigEndian64(b[len(b)-8:])) }

// bigEndian64 is binary.BigEndian.Uint64 of a string as well (a commit's
// window keys are the strings of a map, read without a copy).
func bigEndian64[B ~string | ~[]byte](b B) uint64 {
	_ = b[7]
	var n uint64
	for i := range 8 {
		n = n<<8 | uint64(b[i])
	}
	return n
}

// appendWindowKeyPrefix appends the bytes every window key of key begins
// with: the format byte, the escaped key and the terminator.
func appendWindowKeyPrefix(b, key []byte) []byte {
	return append(appendEscapedKey(append(b, windowKeyV1), key), 0x00, 0x01)
}

// appendEscapedKey appends key with each 0x00 escaped: the bytes a window
// key of key, or of any key key is a prefix of, goes on from after its
// format byte.
func appendEscapedKey(b, key []byte) []byte {
	for _, c := range key {
		b = append(b, c)
		if c == 0x00 {
			b = append(b, 0xFF)
		}
	}
	return b
}

func escapedZeros(key []byte) int {
	n := 0
	for _, c := range key {
		if c == 0x00 {
			n++
		}
	}
	return n
}
