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

// TestWindowCursorRoundTripAndForgery: a window cursor carries its
// window's key, start and end exactly; one signed with another secret,
// tampered with, or made for a key scan is refused, and a window cursor is
// refused by a key scan.
func TestWindowCursorRoundTripAndForgery(t *testing.T) {
	for _, w := range []Window{{Key: "a", Start: 0, End: 5000}, {Key: "héllo wörld", Start: 1714564800000, End: 1714564805000},
		{Key: "", Start: 7, End: 7}, {Key: "x/y%z\x00", Start: 1<<63 - 1, End: 1<<63 - 1}} {
		got, err := decodeWindowCursor("s", encodeWindowCursor("s", w))
		if err != nil || got != w {
			t.Errorf("round trip %+v: %+v %v", w, got, err)
		}
	}
	c := encodeWindowCursor("s", Window{Key: "us-007", Start: 5000, End: 10000, Value: 3})
	if _, err := decodeWindowCursor("other", c); err == nil {
		t.Error("a cursor signed with another secret was accepted")
	}
	b := []byte(c)
	b[2] ^= 1
	if _, err := decodeWindowCursor("s", string(b)); err == nil {
		t.Error("a tampered cursor was accepted")
	}
	if _, err := decodeCursor("s", c); err == nil {
		t.Error("a key scan accepted a window cursor")
	}
	// A key cursor of 16 bytes or more would otherwise read as a window.
	if _, err := decodeWindowCursor("s", encodeCursor("s", "0123456789abcdef-key")); err == nil {
		t.Error("a window scan accepted a key cursor")
	}
}
