package window

import (
	"errors"
	"fmt"
	"time"
)

// ErrNegativeTimestamp is the error of a record stamped before the epoch:
// it belongs to no window, and is for the dead-letter topic rather than
// for counting.
var ErrNegativeTimestamp = errors.New("timestamp before the epoch")

// Window is a span of event time in milliseconds since the epoch.
//
// A time window (tumbling, hopping) is half open, [Start, End), with End =
// Start + size, or the largest int64 where that would overflow. A session
// is closed, [Start, End]: the timestamps of its first and last records,
// equal for a session of one record.
type Window struct {
	Start, End int64
}

// WindowsFor returns the time windows that hold ts, ascending by start:
// every [k*advance, k*advance + size) with k >= 0 and ts in it, advance
// being size for tumbling windows. Windows are aligned to the epoch, as
// in Kafka Streams' TimeWindows, so all keys and all instances agree on
// them. It returns nil for a negative ts and for a session spec.
func (s Spec) WindowsFor(ts int64) []Window {
	size, advance := s.timeGeometry()
	if ts < 0 || size <= 0 || advance <= 0 {
		return nil
	}
	// The first start after ts - size, the last at or before ts. Counting
	// k rather than adding advance to a start never overflows.
	first := max(0, ts-size+advance) / advance
	last := ts / advance
	ws := make([]Window, 0, last-first+1)
	for k := first; k <= last; k++ {
		start := k * advance
		ws = append(ws, Window{Start: start, End: addSat(start, size)})
	}
	return ws
}

// millis converts a validated duration, a whole number of milliseconds, to
// the unit of event time.
func millis(d time.Duration) int64 { return d.Milliseconds() }

// timeGeometry returns the size and advance of time windows in
// milliseconds, or 0, 0 for sessions.
func (s Spec) timeGeometry() (size, advance int64) {
	switch s.Kind {
	case Tumbling:
		return millis(s.Size), millis(s.Size)
	case Hopping:
		return millis(s.Size), millis(s.Advance)
	}
	return 0, 0
}

// Assign returns the windows of a tumbling or hopping store that count a
// record stamped ts: those of WindowsFor(ts) that are still open.
//
// streamTime is the task's stream time after this record: the largest
// timestamp it has seen, this record's included, max(previous, ts), as
// Kafka Streams' observedStreamTime. (Every window that holds ts ends
// after ts, so the stream time before the record gives the same answer:
// a record that advances stream time never finds its windows closed.)
//
// late is true when every window of the record is closed: the record is
// then counted nowhere, and open is nil. A record some of whose windows
// are closed is counted in the others and is not late. A negative ts
// returns an error wrapping ErrNegativeTimestamp.
func (s Spec) Assign(ts, streamTime int64) (open []Window, late bool, err error) {
	if s.Kind != Tumbling && s.Kind != Hopping {
		return nil, false, fmt.Errorf("assign timestamp %d in store %s: %s windows are not time windows", ts, s.Store, s.Kind)
	}
	if ts < 0 {
		return nil, false, fmt.Errorf("assign timestamp %d in store %s: %w", ts, s.Store, ErrNegativeTimestamp)
	}
	all := s.WindowsFor(ts)
	// Windows ascend by end too, so the closed ones come first.
	for i, w := range all {
		if !s.ClosedBy(w, streamTime) {
			return all[i:], false, nil
		}
	}
	return nil, true, nil
}

// CloseTime is the stream time at which w closes: End + grace for a time
// window, End + gap + grace for a session, whose gap is its size (until
// then a record less than grace behind stream time could still extend
// it). A closed window takes no more
// records; with emit final its count is published once, when it closes.
func (s Spec) CloseTime(w Window) int64 {
	end := addSat(w.End, millis(s.Grace))
	if s.Kind == Session {
		end = addSat(end, millis(s.Size))
	}
	return end
}

// ClosedBy reports whether w is closed at streamTime: streamTime >=
// CloseTime(w).
func (s Spec) ClosedBy(w Window, streamTime int64) bool {
	return streamTime >= s.CloseTime(w)
}

// Expired reports whether w has left the store at streamTime: End <=
// streamTime - retention. An expired window is deleted and never
// answered. Validate makes retention at least size + grace (gap + grace
// for sessions), so a window never expires before it closes: a time
// window expires at least size after it closes, a session with the
// shortest retention at the stream time it closes. Emit the finals of the
// windows a stream time closes before deleting the ones it expires.
func (s Spec) Expired(w Window, streamTime int64) bool {
	// Nothing has expired at a negative stream time, and from 0 on
	// streamTime - retention cannot wrap.
	return streamTime >= 0 && w.End <= streamTime-millis(s.Retention)
}
