package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/abacus-streams/abacus/internal/abacus"
)

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  Query
		bad   bool
	}{
		{query: "key=a", want: Query{Key: "a"}},
		{query: "key=a%2Fb%20c", want: Query{Key: "a/b c"}},
		{query: "prefix=a/", want: Query{Key: "a/", Prefix: true}},
		{query: "prefix=", want: Query{Prefix: true}},
		{query: "", bad: true},
		{query: "key=", bad: true},
		{query: "key=a&prefix=b", bad: true},
		{query: "key=%ff", bad: true},
		{query: "key=" + strings.Repeat("x", MaxQueryBytes+1), bad: true},
	} {
		v, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseQuery(v)
		if tc.bad {
			if !errors.Is(err, ErrBadQuery) {
				t.Errorf("ParseQuery(%q) = %+v, %v; want ErrBadQuery", tc.query, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseQuery(%q) = %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	var fe *FieldError
	if err := (Config{WriteTimeout: -1}).Validate(); !errors.As(err, &fe) || fe.Field != "WriteTimeout" {
		t.Errorf("negative WriteTimeout: %v", err)
	}
}

func TestEventFraming(t *testing.T) {
	got := string(appendCount(nil, `a"b`, 42, 3, 17, offsetID))
	want := "id: 3-17\nevent: count\ndata: {\"key\":\"a\\\"b\",\"value\":42,\"partition\":3}\n\n"
	if got != want {
		t.Errorf("count event %q, want %q", got, want)
	}
	if got := string(appendMoved(nil, 2, "revoked")); got != "event: moved\ndata: {\"partition\":2,\"reason\":\"revoked\"}\n\n" {
		t.Errorf("moved event %q", got)
	}
	if EventID(1, 99) != "1-99" {
		t.Errorf("EventID(1, 99) = %q", EventID(1, 99))
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\nb", "\"\\", "<&>", "\xff", "é", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		if strings.ContainsAny(string(b), "\r\n") {
			t.Fatalf("%q framed as %q: a line break ends the data line", s, b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q framed as %q: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q came back as %q", s, back)
		}
	})
}

func TestFence(t *testing.T) {
	f := &fence{before: 10, until: 12, floors: map[string]int64{"k": 7}}
	for _, tc := range []struct {
		key   string
		batch uint64
		value int64
		drop  bool
	}{
		{"k", 9, 99, true},  // published before the read began: in it
		{"k", 11, 7, true},  // maybe in it, and not newer than it
		{"k", 12, 6, true},  // ditto
		{"k", 11, 8, false}, // newer than what was read
		{"k", 13, 1, false}, // published after the read: never in it
		{"x", 9, 1, false},  // a key the snapshot did not send
	} {
		q := &queued{Update: abacus.Update{Key: tc.key, Value: tc.value}, batch: tc.batch}
		if got := f.drops(q); got != tc.drop {
			t.Errorf("drops(%s batch %d value %d) = %v, want %v", tc.key, tc.batch, tc.value, got, tc.drop)
		}
	}
}

func TestInboxKeepsLastValuePerKeyInOrder(t *testing.T) {
	in := inbox{latest: map[string]queued{}}
	in.put(abacus.Update{Key: "a", Value: 1}, 1)
	in.put(abacus.Update{Key: "b", Value: 1}, 1)
	in.put(abacus.Update{Key: "a", Value: 2}, 2)
	for i := range 3000 {
		in.put(abacus.Update{Key: "c", Value: int64(i)}, 3)
	}
	latest, _ := in.take(map[string]queued{})
	var got []string
	for _, q := range appendOrdered(nil, latest) {
		got = append(got, q.Key+"="+itoa(q.Value))
	}
	if strings.Join(got, " ") != "b=1 a=2 c=2999" {
		t.Errorf("queued updates %v, want b=1 a=2 c=2999", got)
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestSnapshotFence: updates published while a stream reads its current
// value are in that value and are not sent again after it.
func TestSnapshotFence(t *testing.T) {
	th := newTestHub(t)
	const key = "raced"
	th.store.commit(th.Hub, kv{key, 5})
	src := th.store.source()
	current := src.Current
	src.Current = func(k string) (int64, int32, bool, error) {
		th.store.commit(th.Hub, kv{k, 6}) // after the stream registered,
		th.store.commit(th.Hub, kv{k, 7}) // before the read
		return current(k)
	}
	srv := httptest.NewServer(th.Handler(src))
	t.Cleanup(srv.Close)
	c := subscribe(t, srv.URL+"?"+keyQuery(key), nil)
	expectSnapshot(t, c, key, 7)
	th.store.commit(th.Hub, kv{key, 8})
	if got := c.nextEvent(t).count(t); got.Value != 8 {
		t.Fatalf("first update %d, want 8: updates in the snapshot were sent again", got.Value)
	}
}

func TestServeReturnsSourceErrorsUnwritten(t *testing.T) {
	th := newTestHub(t)
	errNotOwned := errors.New("not owned")
	src := Source{Current: func(string) (int64, int32, bool, error) { return 0, 3, false, errNotOwned }}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/subscribe?key=k", nil)
	if err := th.Serve(rec, req, Query{Key: "k"}, src); !errors.Is(err, errNotOwned) {
		t.Fatalf("Serve = %v, want the source's error", err)
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Fatalf("Serve wrote %q %v before failing", rec.Body, rec.Header())
	}
	eventually(t, "the stream to leave", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == 0 })
}

func TestHandlerRejectsBadQuery(t *testing.T) {
	th := newTestHub(t)
	resp, err := http.Get(th.url("key=a&prefix=b"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"bad_query"`) {
		t.Fatalf("%s %s", resp.Status, body)
	}
}

// TestBindAfterEndPartition: a key stream whose partition was ended while
// it read its current value is moved as soon as its partition is known.
func TestBindAfterEndPartition(t *testing.T) {
	th := newTestHub(t)
	s := newStream(Query{Key: "k"}, 8)
	ctx := context.Background()
	if err := th.do(ctx, func() { th.register(s) }); err != nil {
		t.Fatal(err)
	}
	th.EndPartition(2, "revoked")
	eventually(t, "the end to be handled", func() bool {
		var seen bool
		_ = th.do(ctx, func() { _, seen = th.lastEnd[2] })
		return seen
	})
	if s.ended() != open {
		t.Fatal("an unbound key stream was ended")
	}
	if err := th.do(ctx, func() { th.bind(s, 2) }); err != nil {
		t.Fatal(err)
	}
	if s.ended() != endMoved {
		t.Fatalf("stream state %d after binding to an ended partition, want moved", s.ended())
	}
	_, _, final := s.drain(nil)
	if string(final) != string(appendMoved(nil, 2, "revoked")) {
		t.Fatalf("final event %q", final)
	}
}
