package window

import (
	"cmp"
	"fmt"
	"slices"
)

// SessionRange bounds the sessions of a key that a record at ts may join:
// every session S with S.End >= from and S.Start <= to, which is every
// session within the gap of ts (see MergeSession). A store loads those
// and no others, as Kafka Streams' findSessions(key,
// earliestSessionEndTime, latestSessionStartTime) does with the same
// bounds.
func (s Spec) SessionRange(ts int64) (from, to int64) {
	gap := millis(s.Size)
	return max(0, ts-gap+1), addSat(ts, gap-1)
}

// distance is how far ts is from the session w: 0 inside it.
func distance(ts int64, w Window) int64 {
	switch {
	case ts < w.Start:
		return w.Start - ts
	case ts > w.End:
		return ts - w.End
	}
	return 0
}

// MergeSession returns the session a record at ts makes of a key's
// sessions, without regard to stream time (AssignSession decides whether
// the record counts). The record joins every session within the gap of
// ts, distance(ts, S) < gap, the gap being the spec's size: merged spans
// ts and all of them, removed lists them by start. A record between two
// sessions within the gap of both bridges them into one.
//
// existing are the key's sessions in any order; those farther away are
// ignored. Merging is not transitive: a session within the gap of merged
// but not of ts is not taken. The sessions AssignSession makes are never
// that close to each other, but for expired ones, which it ignores.
//
// The caller deletes every removed session and stores merged, whose count
// is 1 + the sum of the counts of removed: a record alone starts a session
// of 1. A record inside a session returns that session both as merged and
// as its only removed one; it is updated in place. For emit updates, the
// removed sessions other than merged are retracted.
func (s Spec) MergeSession(existing []Window, ts int64) (merged Window, removed []Window) {
	return s.merge(existing, ts, func(Window) bool { return true })
}

// merge is MergeSession over the sessions of existing that live accepts.
func (s Spec) merge(existing []Window, ts int64, live func(Window) bool) (merged Window, removed []Window) {
	gap := millis(s.Size)
	merged = Window{Start: ts, End: ts}
	for _, w := range existing {
		if distance(ts, w) < gap && live(w) {
			removed = append(removed, w)
			merged.Start = min(merged.Start, w.Start)
			merged.End = max(merged.End, w.End)
		}
	}
	slices.SortFunc(removed, func(a, b Window) int { return cmp.Compare(a.Start, b.Start) })
	return merged, removed
}

// AssignSession decides what a record at ts does to a key's sessions:
// it is counted in merged, as MergeSession has it, or it is late and
// changes nothing.
//
// streamTime is the task's stream time after the record, max(previous,
// ts), as for Assign; the stream time before the record gives the same
// answer. A record is late when a session it would touch is closed
// (ClosedBy): any session it would join, or, when it joins none, the
// session [ts, ts] it would start, closed once ts + gap + grace <=
// streamTime. So a closed session never changes again and its final
// value stays final, while, as with time windows, a record however far
// behind stream time still counts in a session that is open: it may
// extend one backwards.
//
// Sessions in existing that are expired at streamTime are ignored, as if
// the store had deleted them already, so the answer does not depend on
// when the caller deletes them: a record within the gap of an expired
// session starts or joins sessions as if that session had never been.
//
// A negative ts returns an error wrapping ErrNegativeTimestamp.
func (s Spec) AssignSession(existing []Window, ts, streamTime int64) (merged Window, removed []Window, late bool, err error) {
	if s.Kind != Session {
		return Window{}, nil, false, fmt.Errorf("assign timestamp %d in store %s: %s windows are not sessions", ts, s.Store, s.Kind)
	}
	if ts < 0 {
		return Window{}, nil, false, fmt.Errorf("assign timestamp %d in store %s: %w", ts, s.Store, ErrNegativeTimestamp)
	}
	merged, removed = s.merge(existing, ts, func(w Window) bool { return !s.Expired(w, streamTime) })
	closed := func(w Window) bool { return s.ClosedBy(w, streamTime) }
	if len(removed) == 0 && closed(merged) || slices.ContainsFunc(removed, closed) {
		return Window{}, nil, true, nil
	}
	return merged, removed, false, nil
}
