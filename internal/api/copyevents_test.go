package api

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// A relayed or merged stream passes on every whole event of a member's
// stream, byte for byte, and nothing of an event the stream ended in.

// collect runs copyEvents over r and returns what it wrote, one string per
// write.
func collect(r io.Reader) []string {
	var got []string
	copyEvents(r, func(b []byte) bool {
		got = append(got, string(b))
		return true
	})
	return got
}

// cutAfter is s, ending with err instead of io.EOF.
func cutAfter(s string, err error) io.Reader {
	return io.MultiReader(strings.NewReader(s), iotest.ErrReader(err))
}

func TestCopyEvents(t *testing.T) {
	const (
		retry   = "retry: 1000\n\n"
		count   = "event: count\ndata: {\"key\":\"a\",\"value\":0,\"partition\":1}\n\n"
		update  = "id: 1-7\nevent: count\ndata: {\"key\":\"a\",\"value\":3,\"partition\":1}\n\n"
		ping    = ": ping\n\n"
		moved   = "event: moved\ndata: {\"partition\":1,\"reason\":\"revoked\"}\n\n"
		partial = "id: 1-8\nevent: count\ndata: {\"key\":\"a\",\"va"
	)
	whole := []string{retry, count, ping, update, moved}
	stream := strings.Join(whole, "")
	for _, tc := range []struct {
		name string
		r    io.Reader
		want []string
	}{
		{"clean end", strings.NewReader(stream), whole},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(stream)), whole},
		{"last bytes with the end", iotest.DataErrReader(strings.NewReader(stream)), whole},
		{"cut in an event", strings.NewReader(stream + partial), whole},
		{"cut in an event, one byte at a time", iotest.OneByteReader(strings.NewReader(stream + partial)), whole},
		{"cut in an event with the end", iotest.DataErrReader(strings.NewReader(stream + partial)), whole},
		{"connection reset in an event", cutAfter(stream+partial, errors.New("connection reset")), whole},
		{"body cut in an event", cutAfter(stream+partial, io.ErrUnexpectedEOF), whole},
		{"cut before the blank line", strings.NewReader(count + strings.TrimSuffix(update, "\n")), []string{count}},
		{"extra blank lines", strings.NewReader("\n\n" + count + "\n\n" + ping), []string{count, ping}},
		{"CRLF lines", strings.NewReader("event: count\r\ndata: {}\r\n\r\n"), []string{"event: count\r\ndata: {}\n\n"}},
		{"nothing", strings.NewReader(""), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(tc.r)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("wrote %q\nwant  %q", got, tc.want)
			}
		})
	}
}

// A refused write (the client left or stalled) ends the copy at once.
func TestCopyEventsStopsWhenRefused(t *testing.T) {
	r := strings.NewReader(strings.Repeat("event: count\ndata: {}\n\n", 10))
	writes := 0
	copyEvents(r, func([]byte) bool { writes++; return writes < 3 })
	if writes != 3 {
		t.Errorf("%d writes; want 3 (the third refused)", writes)
	}
}

// An event larger than the longest a member sends ends the stream rather
// than holding an unbounded buffer; one as long as the longest passes.
func TestCopyEventsEventSize(t *testing.T) {
	long := "event: count\ndata: " + strings.Repeat("x", maxEventBytes-100) + "\n\n"
	if got := collect(strings.NewReader(long + ": ping\n\n")); len(got) != 2 || got[0] != long {
		t.Errorf("an event of %d bytes: %d writes", len(long), len(got))
	}
	tooLong := "event: count\ndata: " + strings.Repeat("x", maxEventBytes) + "\n\n"
	if got := collect(strings.NewReader(tooLong + ": ping\n\n")); len(got) != 0 {
		t.Errorf("an event of %d bytes: %d writes; want the stream ended", len(tooLong), len(got))
	}
}

// FuzzCopyEvents: whatever a member sends (LF line ends, no NUL, as
// abacus writes), the writes are exactly its whole events in order, each
// with its blank line, and nothing after the last blank line.
func FuzzCopyEvents(f *testing.F) {
	f.Add("retry: 1000\n\nevent: count\ndata: {}\n\n: ping\n\nid: 1-2\ndata: x", 7)
	f.Add("\n\n\n\ndata: a\n\n\n", 1)
	f.Add("data: a\ndata: b\n\nevent: moved\n", 3)
	f.Fuzz(func(t *testing.T, s string, chunk int) {
		s = strings.NewReplacer("\r", "", "\x00", "").Replace(s)
		var want []string
		for rest := s; ; {
			i := strings.Index(rest, "\n\n")
			if i < 0 {
				break
			}
			if i > 0 {
				want = append(want, rest[:i]+"\n\n")
			}
			rest = rest[i+2:]
		}
		var r io.Reader = strings.NewReader(s)
		if chunk = chunk%16 + 1; chunk > 0 {
			r = &chunked{r: r, n: chunk}
		}
		if got := collect(r); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("from %q wrote %q\nwant %q", s, got, want)
		}
	})
}

// chunked reads at most n bytes at a time.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}
