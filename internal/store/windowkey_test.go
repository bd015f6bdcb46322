package store

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"slices"
	"testing"
)

// The bytes of a window key are a wire format (the changelog's record
// keys): these pin them.
func TestWindowKeyBytes(t *testing.T) {
	for _, tc := range []struct {
		w    Window
		want []byte
	}{
		{Window{Key: []byte("ab"), Start: 1, End: 0x0102},
			[]byte{0x01, 'a', 'b', 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2}},
		{Window{Key: nil, Start: 0, End: 0},
			[]byte{0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{Window{Key: []byte{0x00, 'x', 0x00}, Start: math.MaxInt64, End: math.MaxInt64},
			[]byte{0x01, 0x00, 0xFF, 'x', 0x00, 0xFF, 0x00, 0x01,
				0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
	} {
		got := EncodeWindowKey(tc.w)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("EncodeWindowKey(%q, %d, %d) = % x; want % x", tc.w.Key, tc.w.Start, tc.w.End, got, tc.want)
		}
		back, err := DecodeWindowKey(got)
		if err != nil || !bytes.Equal(back.Key, tc.w.Key) || back.Start != tc.w.Start || back.End != tc.w.End {
			t.Errorf("DecodeWindowKey(% x) = %+v, %v; want %+v", got, back, err, tc.w)
		}
	}
}

func TestDecodeWindowKeyRefuses(t *testing.T) {
	valid := EncodeWindowKey(Window{Key: []byte("k"), Start: 5, End: 9})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"format only", []byte{0x01}},
		{"unknown format", append([]byte{0x02}, valid[1:]...)},
		{"format zero", append([]byte{0x00}, valid[1:]...)},
		{"no terminator", []byte{0x01, 'k', 'e', 'y'}},
		{"bad escape", []byte{0x01, 'k', 0x00, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"a time short", valid[:len(valid)-1]},
		{"a byte over", append(bytes.Clone(valid), 0)},
		{"start only", valid[:len(valid)-8]},
		{"negative start", EncodeWindowKey(Window{Key: []byte("k"), Start: -1, End: 9})},
		{"negative end", EncodeWindowKey(Window{Key: []byte("k"), Start: 0, End: -1})},
		{"end before start", EncodeWindowKey(Window{Key: []byte("k"), Start: 9, End: 8})},
	} {
		if w, err := DecodeWindowKey(tc.b); !errors.Is(err, ErrWindowKey) {
			t.Errorf("%s: DecodeWindowKey(% x) = %+v, %v; want ErrWindowKey", tc.name, tc.b, w, err)
		}
	}
	if _, err := DecodeWindowKey(valid); err != nil {
		t.Errorf("the valid key is refused: %v", err)
	}
}

// compareWindows is the order window keys must sort in.
func compareWindows(a, b Window) int {
	return cmp.Or(bytes.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
}

// Keys that are prefixes of each other and keys with 0x00, 0x01 and 0xFF
// where the escaping and the terminator could go wrong sort as their
// windows do.
func TestWindowKeyOrder(t *testing.T) {
	keys := []string{"", "\x00", "\x00\x00", "\x00\x01", "\x00\xff", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b",
		"a\x01", "a\xff", "ab", "b", "\xff", "\xff\x00", "\xff\xff"}
	times := [][2]int64{{0, 0}, {0, 1}, {0, 1 << 40}, {1, 1}, {255, 256}, {256, 300}, {1 << 40, 1 << 41}, {math.MaxInt64, math.MaxInt64}}
	var windows []Window
	for _, k := range keys {
		for _, tm := range times {
			windows = append(windows, Window{Key: []byte(k), Start: tm[0], End: tm[1]})
		}
	}
	want := slices.Clone(windows)
	slices.SortFunc(want, compareWindows)
	encoded := make([][]byte, len(windows))
	for i, w := range windows {
		encoded[i] = EncodeWindowKey(w)
	}
	slices.Reverse(encoded) // not already in order
	slices.SortFunc(encoded, bytes.Compare)
	for i, b := range encoded {
		got, err := DecodeWindowKey(b)
		if err != nil {
			t.Fatal(err)
		}
		if compareWindows(got, want[i]) != 0 {
			t.Fatalf("window key %d in byte order is %q %d-%d; want %q %d-%d", i, got.Key, got.Start, got.End, want[i].Key, want[i].Start, want[i].End)
		}
	}
}

// A window key round-trips, sorts as its window does, and is the only
// encoding of its window: whatever bytes decode re-encode to themselves.
func FuzzWindowKey(f *testing.F) {
	f.Add([]byte("a"), int64(0), int64(10), []byte("a\x00"), int64(0), int64(10), []byte{0x01, 'a', 0x00, 0x01})
	f.Add([]byte("\x00"), int64(5), int64(5), []byte(""), int64(7), int64(9), EncodeWindowKey(Window{Key: []byte("\x00\x01"), Start: 3, End: 4}))
	f.Add([]byte("\xff\x00"), int64(1<<40), int64(-1), []byte("\xff"), int64(-3), int64(2), []byte{0x01, 0x00, 0xFF, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, k1 []byte, s1, e1 int64, k2 []byte, s2, e2 int64, raw []byte) {
		w1, w2 := Window{Key: k1, Start: s1, End: e1}, Window{Key: k2, Start: s2, End: e2}
		b1, b2 := EncodeWindowKey(w1), EncodeWindowKey(w2)
		valid := func(w Window) bool { return w.Start >= 0 && w.End >= w.Start }
		for _, c := range []struct {
			w Window
			b []byte
		}{{w1, b1}, {w2, b2}} {
			got, err := DecodeWindowKey(c.b)
			switch {
			case !valid(c.w):
				if !errors.Is(err, ErrWindowKey) {
					t.Fatalf("window %q %d-%d decodes from % x: %+v, %v", c.w.Key, c.w.Start, c.w.End, c.b, got, err)
				}
			case err != nil || compareWindows(got, c.w) != 0:
				t.Fatalf("window %q %d-%d: DecodeWindowKey(% x) = %+v, %v", c.w.Key, c.w.Start, c.w.End, c.b, got, err)
			case windowKeyEnd(c.b) != c.w.End:
				t.Fatalf("windowKeyEnd(% x) = %d, want %d", c.b, windowKeyEnd(c.b), c.w.End)
			}
		}
		if valid(w1) && valid(w2) {
			if got, want := bytes.Compare(b1, b2), compareWindows(w1, w2); got != want {
				t.Fatalf("% x vs % x compare %d; windows %q %d-%d and %q %d-%d compare %d", b1, b2, got, k1, s1, e1, k2, s2, e2, want)
			}
		}
		if w, err := DecodeWindowKey(raw); err == nil {
			if b := EncodeWindowKey(w); !bytes.Equal(b, raw) {
				t.Fatalf("% x decodes to %q %d-%d, which encodes to % x", raw, w.Key, w.Start, w.End, b)
			}
		} else if !errors.Is(err, ErrWindowKey) {
			t.Fatalf("DecodeWindowKey(% x): %v does not wrap ErrWindowKey", raw, err)
		}
	})
}
