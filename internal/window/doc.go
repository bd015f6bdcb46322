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
// size + grace, so a window expires at least its size after it closes.
// Pinned by TestExpired and TestExpiryFollowsClosing.
//
// # The reference test
//
// TestReferenceTimeWindows feeds thousands of records, out of order
// within and beyond the grace, through a task built from this package's
// API alone, and compares every record's windows, every final value and
// every deletion with a reference that tries every window start near each
// record against the stream times.
package window
