// Package window holds the semantics of windowed counts: which windows a
// record counts in, when a window closes, when a record is too late and
// when a window leaves the store. It knows no Kafka, no store and no
// clock. Event time is a record's timestamp in milliseconds since the
// epoch, and the only "now" is the task's stream time: the largest
// timestamp the task has seen, which the caller keeps and passes in.
//
// # Windowed stores
//
// A Spec describes one windowed store; the YAML windows: list holds them
// (Spec.UnmarshalYAML) and ABACUS_WINDOWS their compact form, read by
// ParseCompact and written by FormatCompact:
//
//	trades-5s=hopping,size=5s,advance=1s,grace=2s;visits=session,size=30m,emit=final
//
// WithDefaults fills the unset fields (emit updates, output topic
// "<store>-topic", retention max(size + grace, 1h)) and Validate reports
// the first problem of a list in one line naming the entry and the field:
// "windows[1] (trades-5s): advance 6s is larger than size 5s". Pinned by
// TestValidateNamesEntryAndField, TestWithDefaults, TestYAMLList,
// TestParseCompactErrors, TestCompactRoundTrip and FuzzCompact.
//
// # Time windows
//
// Tumbling and hopping windows are aligned to the epoch, as Kafka
// Streams' TimeWindows: a record at ts counts in every window [k*advance,
// k*advance + size) that holds it, k >= 0, advance being size for
// tumbling windows. So every key and every instance agrees on the
// windows. With size 5s and advance 1s a record at 12.345s is in the five
// windows starting at 8s to 12s, and a record at exactly 5s is in [5s,
// 10s), not in [0s, 5s). A negative timestamp is in no window
// (ErrNegativeTimestamp). Pinned by TestWindowsForTumbling,
// TestWindowsForHopping and TestWindowsForBruteForce.
//
// # Closing and lateness
//
// A time window closes when stream time reaches End + grace. A closed
// window takes no more records, and with emit final its count is
// published then, once (ClosedBy, CloseTime). A record is counted in
// those of its windows that are open; when all are closed it is late and
// counted nowhere. Assign takes the stream time after the record,
// max(previous, ts), as Kafka Streams' observedStreamTime; a record that
// advances stream time is therefore never late, and the stream time
// before it would give the same answer. Pinned by
// TestAssignClosesWindowsAtEndPlusGrace, TestAssignStreamTimeBeforeOrAfter
// and TestCloseTime.
//
// # Expiry
//
// A window expires, is deleted and is no longer answered, when End <=
// streamTime - retention (Expired). Validate keeps retention at least
// size + grace (gap + grace for sessions), so no window expires before it
// closes; but a session at the shortest retention expires at the very
// stream time it closes, so a task emits the finals a stream time closes
// before it deletes what that stream time expires. Pinned by TestExpired
// and TestExpiryFollowsClosing.
//
// # Sessions
//
// A session of a key spans its first to its last record, both included,
// Window{Start: first, End: last}; the spec's size is its inactivity gap.
// The distance of a timestamp to a session is 0 inside it and otherwise
// the distance to its nearer end. A record joins every session of its key
// at a distance below the gap (MergeSession); joining two bridges them
// into one, whose count is 1 + the counts of those it replaces.
// SessionRange bounds the sessions a store must load to find them.
//
// A session closes when stream time reaches End + gap + grace. A record
// is late when a session it would touch is closed: one it would join, or,
// if it joins none, the session [ts, ts] it would start
// (AssignSession). So a closed session never changes again, while, as
// with time windows, a record however far behind still counts when the
// session it joins is open. Expired sessions are ignored as if deleted, so
// when a store deletes them does not matter; at the shortest retention a
// session expires as it closes, and a record that would have touched it
// starts a session of its own instead of being late.
//
// For example, with a gap of 5 minutes and a grace of 10, one key's
// records arriving at 10:00, 10:03, 10:11, 10:07, 10:20, 10:16 make:
//
//	10:00  [10:00, 10:00] 1
//	10:03  [10:00, 10:03] 2                    3 minutes after 10:00: joins it
//	10:11  [10:00, 10:03] 2, [10:11, 10:11] 1  8 after 10:03: a session of its own
//	10:07  [10:00, 10:11] 4                    4 from both: bridges them
//	10:20  [10:00, 10:11] 4, [10:20, 10:20] 1  9 after 10:11
//	10:16  [10:00, 10:11] 4, [10:16, 10:20] 2  5 after 10:11 is not below the gap
//
// Once stream time reaches 10:26, [10:00, 10:11] is closed (10:11 + 5 +
// 10): a record at 10:14 would bridge it with [10:16, 10:20] and is late;
// one at 10:24 extends [10:16, 10:20] to [10:16, 10:24], count 3. Pinned
// by TestSessionWorkedExample, TestMergeSessionGap,
// TestMergeSessionBridges, TestSessionRangeHoldsEveryCandidate,
// TestAssignSessionLateness, TestAssignSessionNeverChangesClosed and
// TestAssignSessionIgnoresExpired.
//
// # The reference tests
//
// TestReferenceTimeWindows and TestReferenceSessions feed thousands of
// records, out of order within and beyond the grace, through a task built
// from this package's API alone, and compare every record's outcome, every
// final value and every deletion with a reference computed another way:
// for time windows by trying every window start near each record against
// the stream times, for sessions with sorted lists searched by bounds
// and, where no session expired next to a later one, with the clusters of
// the counted records.
package window
