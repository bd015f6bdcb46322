package api

import "testing"

// TestParseWindowTime pins the forms of a windows time bound: epoch
// milliseconds as given, RFC 3339 times with any offset (its "+" arriving
// as a space too) rounded up to a whole millisecond, nothing before the
// epoch.
func TestParseWindowTime(t *testing.T) {
	const noon = 1714564800000 // 2024-05-01T12:00:00Z
	for _, tc := range []struct {
		in   string
		want int64 // -1: refused
	}{
		{"0", 0},
		{"1714564800000", noon},
		{"9223372036854775807", 1<<63 - 1},
		{"2024-05-01T12:00:00Z", noon},
		{"2024-05-01T14:00:00+02:00", noon},
		{"2024-05-01T14:00:00 02:00", noon},
		{"2024-05-01T11:30:00-00:30", noon},
		{"2024-05-01T12:00:00.001Z", noon + 1},
		{"2024-05-01T12:00:00.0001Z", noon + 1},
		{"2024-05-01T12:00:00.999999999Z", noon + 1000},
		{"1970-01-01T00:00:00Z", 0},
		{"1969-12-31T23:59:59.9999Z", 0}, // rounded up to the epoch
		{"-1", -1},
		{"1969-12-31T23:59:59Z", -1},
		{"9223372036854775808", -1},
		{"2024-05-01", -1},
		{"2024-05-01T12:00:00", -1},
		{"1e3", -1},
		{"yesterday", -1},
	} {
		got, err := parseWindowTime(tc.in)
		switch {
		case tc.want < 0 && err == nil:
			t.Errorf("parseWindowTime(%q) = %d; want an error", tc.in, got)
		case tc.want >= 0 && (err != nil || got != tc.want):
			t.Errorf("parseWindowTime(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
