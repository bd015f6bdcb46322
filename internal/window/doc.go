// Package window describes abacus's windowed stores, which count per key
// and per window of event time rather than per key alone. Event time is a
// record's timestamp in milliseconds since the epoch.
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
package window
