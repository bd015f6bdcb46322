package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/abacus-streams/abacus/internal/subscribe"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// Live count subscriptions, end to end: Server-Sent Events from
// the real binary, read with a plain HTTP client and a hand-written SSE
// parser (so every byte of the framing is checked, not a library's idea of
// it).

// sseBlock is one block of an event stream, up to its blank line: an event,
// a retry field or a comment (a heartbeat, a truncation note).
type sseBlock struct {
	ID      string
	HasID   bool
	Event   string
	Data    string
	Retry   string
	Comment string
}

// sseCountData is the data of a count event.
type sseCountData struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
}

// sseMovedData is the data of a moved event.
type sseMovedData struct {
	Partition *int32 `json:"partition"`
	Reason    string `json:"reason"`
}

// readSSE parses an event stream into blocks and hands each to fn until
// the stream ends (io.EOF for a clean end) or fn returns false (nil).
func readSSE(r io.Reader, fn func(sseBlock) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var b sseBlock
	var data []string
	empty := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line != "" {
				return io.ErrUnexpectedEOF // a block cut in the middle
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !empty {
				b.Data = strings.Join(data, "\n")
				if !fn(b) {
					return nil
				}
			}
			b, data, empty = sseBlock{}, nil, true
			continue
		}
		empty = false
		if c, ok := strings.CutPrefix(line, ":"); ok {
			b.Comment += strings.TrimPrefix(c, " ")
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			b.ID, b.HasID = value, true
		case "event":
			b.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			b.Retry = value
		default:
			return fmt.Errorf("unknown SSE field in %q", line)
		}
	}
}

// sseStream is one open subscription read in the background.
type sseStream struct {
	url    string
	resp   *http.Response
	cancel context.CancelFunc
	ended  chan struct{}

	mu     sync.Mutex
	blocks []sseBlock
	err    error // why it ended; io.EOF for a clean end
}

// sseAnswer is a subscription request's answer when it is not a stream.
type sseAnswer struct {
	Status     int
	RetryAfter string
	Code       string // the JSON error's code
	Body       string
}

func (a sseAnswer) String() string {
	return fmt.Sprintf("%d (Retry-After %q) %s", a.Status, a.RetryAfter, strings.TrimSpace(a.Body))
}

var sseClient = &http.Client{Transport: &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	ResponseHeaderTimeout: 20 * time.Second,
	MaxIdleConnsPerHost:   8,
	DisableCompression:    true,
}}

// sseURL is the subscription of a key (or, with prefix, of a prefix)
// at an instance.
func sseURL(in *testkit.Instance, key string, prefix bool) string {
	return in.SubscribeURL(storeName, key, prefix)
}

// sseOpen subscribes once. It returns the stream on a 200, else the answer.
func sseOpen(client *http.Client, u string, header http.Header) (*sseStream, sseAnswer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	h := http.Header{"Accept": {"text/event-stream"}}
	maps.Copy(h, header)
	req, err := testkit.NewGet(ctx, u, h)
	if err != nil {
		cancel()
		return nil, sseAnswer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, sseAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		a := sseAnswer{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(body)}
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			a.Code = e.Error.Code
		}
		return nil, a, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		cancel()
		resp.Body.Close()
		return nil, sseAnswer{}, fmt.Errorf("200 with Content-Type %q", ct)
	}
	s := &sseStream{url: u, resp: resp, cancel: cancel, ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		defer resp.Body.Close()
		err := readSSE(resp.Body, func(b sseBlock) bool {
			s.mu.Lock()
			s.blocks = append(s.blocks, b)
			s.mu.Unlock()
			return true
		})
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	return s, sseAnswer{Status: 200}, nil
}

// sseMustSubscribe subscribes, retrying 503s for a while (a partition may
// still be restoring after a rebalance that readiness did not wait for),
// and fails the test on anything else.
func sseMustSubscribe(t *testing.T, u string, header http.Header) *sseStream {
	t.Helper()
	s, _ := sseSubscribeRetrying(t, 30*time.Second, []string{u}, header)
	return s
}

// sseSubscribeRetrying subscribes at each URL in turn until one answers 200.
// Every refusal on the way must be a 503 with Retry-After and a JSON error
// (a failing connection counts as one too: the member may just have died);
// it waits as Retry-After says, at most a second. It returns the stream
// and the refusals seen, by error code.
func sseSubscribeRetrying(t *testing.T, within time.Duration, urls []string, header http.Header) (*sseStream, map[string]int) {
	t.Helper()
	refused := map[string]int{}
	deadline := time.Now().Add(within)
	for i := 0; ; i++ {
		u := urls[i%len(urls)]
		s, a, err := sseOpen(sseClient, u, header)
		switch {
		case s != nil:
			t.Cleanup(s.close)
			return s, refused
		case err != nil:
			refused["connect: "+err.Error()]++
		case a.Status != http.StatusServiceUnavailable || a.Code == "" || a.RetryAfter == "":
			t.Fatalf("subscribe %s: %s; want 200, or 503 with Retry-After and a JSON error", u, a)
		default:
			refused[a.Code]++
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscription within %s; refusals: %v", within, refused)
		}
		wait := time.Second
		if a.RetryAfter != "" {
			if n, err := strconv.Atoi(a.RetryAfter); err == nil && n >= 1 {
				wait = min(time.Duration(n)*time.Second, time.Second)
			} else {
				t.Fatalf("Retry-After %q is not a number of seconds", a.RetryAfter)
			}
		}
		if i%len(urls) != len(urls)-1 {
			wait = 0 // try the other members first
		}
		time.Sleep(wait)
	}
}

func (s *sseStream) close() {
	s.cancel()
	<-s.ended
}

// snapshot returns the blocks so far and, once the stream ended, why.
func (s *sseStream) snapshot() (blocks []sseBlock, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ended:
		done = true
	default:
	}
	return append([]sseBlock(nil), s.blocks...), done, s.err
}

// counts returns the count events so far, and whether each had an id.
func (s *sseStream) counts(t *testing.T) []sseCountEvent {
	t.Helper()
	blocks, _, _ := s.snapshot()
	var out []sseCountEvent
	for _, b := range blocks {
		if b.Event != "count" {
			continue
		}
		var d sseCountData
		if err := json.Unmarshal([]byte(b.Data), &d); err != nil {
			t.Fatalf("%s: count event with bad data %q: %v", s.url, b.Data, err)
		}
		out = append(out, sseCountEvent{sseCountData: d, id: b.ID, hasID: b.HasID})
	}
	return out
}

type sseCountEvent struct {
	sseCountData
	id    string
	hasID bool
}

// waitValues waits until the last value of every key of want is exactly
// its count there; a stream that ends first fails the test.
func (s *sseStream) waitValues(t *testing.T, within time.Duration, want map[string]int64) {
	t.Helper()
	testkit.Eventually(t, within, func() error {
		_, done, err := s.snapshot()
		lasts := map[string]int64{}
		for _, e := range s.counts(t) {
			lasts[e.Key] = e.Value
		}
		for k, v := range want {
			got, ok := lasts[k]
			if ok && got > v {
				t.Fatalf("%s: %q reached %d, more than the true %d", s.url, k, got, v)
			}
			if !ok || got != v {
				if done {
					t.Fatalf("%s ended (%v) with %q at %d (seen %v), want %d", s.url, err, k, got, ok, v)
				}
				return fmt.Errorf("%s: %q at %d (seen %v), waiting for %d", s.url, k, got, ok, v)
			}
		}
		return nil
	})
}

// waitEnd waits until the stream ends and returns why, and its last block.
func (s *sseStream) waitEnd(t *testing.T, within time.Duration) (error, sseBlock) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(within):
		t.Fatalf("%s did not end within %s", s.url, within)
	}
	blocks, _, err := s.snapshot()
	var last sseBlock
	if len(blocks) > 0 {
		last = blocks[len(blocks)-1]
	}
	return err, last
}

// sseCheckStream checks the framing of a whole stream: it opens with the
// retry field; the snapshot (no id) comes before every update; each
// update's id is "<partition>-<offset>" naming the partition of its data,
// offsets never decrease within a partition; the values of a key strictly
// increase; a moved event, if any, is the last block; keys are exactly
// key (or have the prefix). It returns the count events.
func sseCheckStream(t *testing.T, s *sseStream, key string, prefix bool) []sseCountEvent {
	t.Helper()
	blocks, _, _ := s.snapshot()
	if len(blocks) == 0 || blocks[0].Retry == "" || blocks[0].Event != "" {
		t.Fatalf("%s: first block %+v, want the retry field", s.url, blocks[:min(1, len(blocks))])
	}
	if ms, err := strconv.Atoi(blocks[0].Retry); err != nil || ms <= 0 {
		t.Errorf("%s: retry %q is not a positive number of milliseconds", s.url, blocks[0].Retry)
	}
	for i, b := range blocks {
		switch b.Event {
		case "count", "":
		case "moved":
			var m sseMovedData
			if err := json.Unmarshal([]byte(b.Data), &m); err != nil || m.Partition == nil || m.Reason == "" {
				t.Errorf("%s: moved event with data %q (%v)", s.url, b.Data, err)
			}
			if i != len(blocks)-1 {
				t.Errorf("%s: moved event followed by %+v", s.url, blocks[i+1:])
			}
		default:
			t.Errorf("%s: unexpected event type %q", s.url, b.Event)
		}
	}
	events := s.counts(t)
	last := map[string]int64{}
	offsets := map[int32]int64{}
	for _, e := range events {
		if prefix && !strings.HasPrefix(e.Key, key) || !prefix && e.Key != key {
			t.Errorf("%s: event of key %q", s.url, e.Key)
		}
		switch {
		case !prefix:
			// A key stream's id is its value, the current value's too.
			if e.id != strconv.FormatInt(e.Value, 10) {
				t.Errorf("%s: event %+v has id %q, want its value", s.url, e, e.id)
			}
		case !e.hasID:
			// A snapshot value; in a fan-in, each partition's snapshot
			// comes before that partition's updates, but partitions
			// interleave, and a partition that moved starts again.
		default:
			ps, os, ok := strings.Cut(e.id, "-")
			p, perr := strconv.ParseInt(ps, 10, 32)
			off, oerr := strconv.ParseInt(os, 10, 64)
			if !ok || perr != nil || oerr != nil || int32(p) != e.Partition || off < 0 {
				t.Errorf("%s: id %q does not name the partition %d of %+v", s.url, e.id, e.Partition, e)
			} else if prev, ok := offsets[int32(p)]; ok && off < prev {
				t.Errorf("%s: id %q after offset %d of the same partition", s.url, e.id, prev)
			} else {
				offsets[int32(p)] = off
			}
		}
		if prev, ok := last[e.Key]; ok && e.Value <= prev {
			t.Errorf("%s: %q went from %d to %d; values must strictly increase", s.url, e.Key, prev, e.Value)
		}
		last[e.Key] = e.Value
	}
	return events
}

// sseOwnerOf names the member that owns key, and the key's partition, as the
// cluster sees it.
func sseOwnerOf(t *testing.T, in *testkit.Instance, key string) (string, int32) {
	t.Helper()
	var md struct {
		Partition int32  `json:"partition"`
		Owner     string `json:"owner"`
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		code, body, err := in.GetJSON("/api/v1/stores/"+storeName+"/keys/"+url.PathEscape(key)+"/metadata", &md)
		if err == nil && code != 200 {
			err = fmt.Errorf("metadata of %q: %d %s", key, code, body)
		}
		return err
	})
	return md.Owner, md.Partition
}

// sseOwner finds the member of pods that owns key (as pods[0] sees it),
// the other members, and the key's partition.
func sseOwner(t *testing.T, pods []*testkit.Instance, key string) (*testkit.Instance, []*testkit.Instance, int32) {
	t.Helper()
	name, partition := sseOwnerOf(t, pods[0], key)
	owner, others := ssePodNamed(t, pods, name)
	return owner, others, partition
}

func ssePodNamed(t *testing.T, pods []*testkit.Instance, name string) (*testkit.Instance, []*testkit.Instance) {
	t.Helper()
	var others []*testkit.Instance
	var found *testkit.Instance
	for _, in := range pods {
		if in.Name == name {
			found = in
		} else {
			others = append(others, in)
		}
	}
	if found == nil {
		t.Fatalf("no member %q", name)
	}
	return found, others
}

func sseRecords(key string, n int) []testkit.Record {
	out := make([]testkit.Record, n)
	for i := range out {
		out[i] = testkit.Record{Key: []byte(key), Value: []byte(strconv.Itoa(i))}
	}
	return out
}

// Acceptance 1: a key subscription streamed through a member that does not
// own the key sees strictly increasing values ending at exactly N; a
// prefix subscription (fan-in from every member) sees only keys with the
// prefix, each ending on its exact count.
func TestSSEKeyAndPrefixAcrossPods(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)

	const key = "sse-key"
	owner, others, partition := sseOwner(t, pods, key)
	via := others[0]
	t.Logf("%q lives in partition %d on %s; subscribing through %s", key, partition, owner.Name, via.Name)

	// ?local=true asks the member alone: it does not own the key.
	if s, a, err := sseOpen(sseClient, sseURL(via, key, false)+"&local=true", nil); err != nil || s != nil || a.Code != "not_owner" || a.RetryAfter == "" {
		if s != nil {
			s.close()
		}
		t.Errorf("local subscription at a member that does not own the key: %s %v; want 503 not_owner with Retry-After", a, err)
	}
	keyStream := sseMustSubscribe(t, sseURL(via, key, false), nil)
	prefixStream := sseMustSubscribe(t, sseURL(others[1], "sse-p/", true), nil)
	// The first value of a key never counted is 0, with the id 0.
	keyStream.waitValues(t, 30*time.Second, map[string]int64{key: 0})
	if first := keyStream.counts(t)[0]; first.id != "0" || first.Partition != partition {
		t.Errorf("first event %+v: want id 0 and partition %d", first, partition)
	}

	// Several batches for the key, keys with the prefix (spread over the
	// partitions, so every member streams some) and keys without it.
	truth := map[string]int64{}
	var joiners []*sseStream
	const batches, perBatch = 5, 60
	for i := range batches {
		var batch []testkit.Record
		batch = append(batch, sseRecords(key, perBatch)...)
		truth[key] += perBatch
		for k := range 12 {
			pk := fmt.Sprintf("sse-p/%02d", k)
			n := (k%4 + 1) * (i + 1)
			batch = append(batch, sseRecords(pk, n)...)
			truth[pk] += int64(n)
		}
		for _, other := range []string{"sse-p", "sse-q/01", "xsse-p/01", "sse-P/01"} {
			batch = append(batch, sseRecords(other, 3)...)
		}
		testkit.Produce(t, b.Addr(), input, "murmur2_random", batch)
		// Subscribers that come while the batch is being counted and
		// committed: their first value and the updates after it must not
		// overlap (no value twice, none going back).
		joiners = append(joiners, sseMustSubscribe(t, sseURL(pods[i%3], key, false), nil))
	}
	keyStream.waitValues(t, time.Minute, map[string]int64{key: truth[key]})
	for _, s := range joiners {
		s.waitValues(t, time.Minute, map[string]int64{key: truth[key]})
		sseCheckStream(t, s, key, false)
	}
	events := sseCheckStream(t, keyStream, key, false)
	t.Logf("key stream: %d events for %d records (the rest coalesced)", len(events), truth[key])
	for _, e := range events {
		if e.Partition != partition {
			t.Errorf("event %+v from partition %d, want %d", e, e.Partition, partition)
		}
	}

	prefixTruth := map[string]int64{}
	for k, v := range truth {
		if strings.HasPrefix(k, "sse-p/") {
			prefixTruth[k] = v
		}
	}
	prefixStream.waitValues(t, time.Minute, prefixTruth)
	pevents := sseCheckStream(t, prefixStream, "sse-p/", true)
	parts := map[int32]bool{}
	for _, e := range pevents {
		parts[e.Partition] = true
	}
	t.Logf("prefix stream: %d events over %d partitions for %d keys", len(pevents), len(parts), len(prefixTruth))

	// A late subscriber to the prefix gets every key's count at once, as
	// snapshots without ids, from every member.
	late := sseMustSubscribe(t, sseURL(pods[0], "sse-p/", true), nil)
	late.waitValues(t, 30*time.Second, prefixTruth)
	for _, e := range sseCheckStream(t, late, "sse-p/", true) {
		if e.hasID {
			t.Errorf("late prefix subscriber got an update %+v; nothing changed since it came", e)
		}
	}
	// So does a late key subscriber, through every member, whose
	// Last-Event-ID names no value (a prefix stream's id) or an older one.
	for i, in := range pods {
		lastID := []string{"0-1", "1", strconv.FormatInt(truth[key]-1, 10)}[i]
		s := sseMustSubscribe(t, sseURL(in, key, false), http.Header{"Last-Event-ID": {lastID}})
		s.waitValues(t, 30*time.Second, map[string]int64{key: truth[key]})
		if ev := sseCheckStream(t, s, key, false); len(ev) != 1 {
			t.Errorf("late subscriber through %s with Last-Event-ID %s: %+v, want the current value alone", in.Name, lastID, ev)
		}
		s.close()
	}
	for _, s := range []*sseStream{keyStream, prefixStream} {
		if _, done, err := s.snapshot(); done {
			t.Errorf("%s ended: %v", s.url, err)
		}
	}
}

// errors of a stream that the owner's death may cause.
func sseEndedByCrash(err error) bool {
	return err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// Acceptance 3: kill -9 the owner of a key. Its streams end (EOF, a reset
// or a moved event), both the one read from the owner and the one streamed
// through another member; a reconnection through any survivor gets the
// exact current value from the new owner once it has restored (503 with
// Retry-After until then), then the updates it counts.
func TestSSEOwnerKilled(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)

	const key = "sse-failover"
	owner, survivors, partition := sseOwner(t, pods, key)
	ownerName := owner.Name
	direct := sseMustSubscribe(t, sseURL(owner, key, false), nil)
	relayed := sseMustSubscribe(t, sseURL(survivors[0], key, false), nil)

	const n = 500
	for range 5 {
		testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords(key, n/5))
	}
	// The owner streamed n: it committed n (input offsets included), so
	// its death takes nothing back and the new owner must say exactly n.
	for _, s := range []*sseStream{direct, relayed} {
		s.waitValues(t, time.Minute, map[string]int64{key: n})
		sseCheckStream(t, s, key, false)
	}
	seen := relayed.counts(t)
	lastID := seen[len(seen)-1].id

	killed := time.Now()
	owner.Kill()
	err, last := direct.waitEnd(t, 30*time.Second)
	if !sseEndedByCrash(err) && last.Event != "moved" {
		t.Errorf("%s ended with %v after %+v; want EOF, a reset or a moved event", direct.url, err, last)
	}
	t.Logf("%s ended %s after the kill: %v", direct.url, time.Since(killed).Round(time.Millisecond), err)
	// The stream relayed by a survivor follows the key to its new owner.
	defer func() {
		if _, done, err := relayed.snapshot(); done {
			t.Errorf("%s, relayed by a survivor, ended: %v", relayed.url, err)
		}
		sseCheckStream(t, relayed, key, false)
	}()

	// EventSource would reconnect with the last id it saw (the value n);
	// the survivors take turns. It is sent nothing twice: no current
	// value, as it is n, until the key changes. A reconnection that saw
	// less is sent the exact current value first.
	urls := []string{sseURL(survivors[0], key, false), sseURL(survivors[1], key, false)}
	s, refused := sseSubscribeRetrying(t, 90*time.Second, urls, http.Header{"Last-Event-ID": {lastID}})
	t.Logf("resubscribed %s after the kill; refusals on the way: %v", time.Since(killed).Round(time.Millisecond), refused)
	behind, _ := sseSubscribeRetrying(t, 90*time.Second, urls, http.Header{"Last-Event-ID": {strconv.Itoa(n - 1)}})
	behind.waitValues(t, 30*time.Second, map[string]int64{key: n})
	if first := behind.counts(t)[0]; first.Value != n || first.id != strconv.Itoa(n) || first.Partition != partition {
		t.Fatalf("first event after reconnecting with Last-Event-ID %d: %+v; want the exact current value %d of partition %d", n-1, first, n, partition)
	}
	if got := s.counts(t); len(got) != 0 {
		t.Fatalf("reconnected with Last-Event-ID %s, and was sent %+v; want nothing until the key changes", lastID, got)
	}
	newOwner, _ := sseOwnerOf(t, survivors[0], key)
	if newOwner == ownerName {
		t.Errorf("the dead %s still owns %q", ownerName, key)
	}

	// The new owner streams what it counts.
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords(key, 50))
	s.waitValues(t, time.Minute, map[string]int64{key: n + 50})
	if first := s.counts(t)[0]; first.Value <= n {
		t.Errorf("reconnected with Last-Event-ID %s, and was sent %+v first", lastID, first)
	}
	sseCheckStream(t, s, key, false)
	sseCheckStream(t, behind, key, false)
	relayed.waitValues(t, time.Minute, map[string]int64{key: n + 50})

	// The dead member comes back and takes partitions back from the
	// survivors: the key streams asked of the survivors that owned them
	// stay open and go on from the new owner with values that only rise,
	// without a moved event; so does a prefix fan-in, which follows each
	// partition on its own.
	truth := map[string]int64{}
	streams := map[string]*sseStream{}
	owners := map[string]string{}
	parts := map[string]int32{}
	for i := 0; len(streams) < 4 && i < 100; i++ {
		k := fmt.Sprintf("sse-move-%d", i)
		o, p := sseOwnerOf(t, survivors[0], k)
		if slices.Contains(slices.Collect(maps.Values(parts)), p) {
			continue
		}
		in, _ := ssePodNamed(t, pods, o)
		streams[k], owners[k], parts[k], truth[k] = sseMustSubscribe(t, sseURL(in, k, false), nil), o, p, 0
	}
	fanIn := sseMustSubscribe(t, sseURL(survivors[1], "sse-", true), nil)
	for k, s := range streams {
		s.waitValues(t, 30*time.Second, map[string]int64{k: 0})
	}
	fanIn.waitValues(t, 30*time.Second, map[string]int64{key: n + 50})

	owner.Restart()
	owner.WaitReady(2 * time.Minute)
	var moved []string
	testkit.Eventually(t, time.Minute, func() error {
		v, _, _ := survivors[0].Cluster()
		for _, m := range v.Members {
			if m.Member == ownerName && len(m.Partitions) > 0 {
				return nil
			}
		}
		return fmt.Errorf("%s owns nothing yet: %+v", ownerName, v)
	})
	for k := range streams {
		if now, _ := sseOwnerOf(t, survivors[0], k); now != owners[k] {
			moved = append(moved, k)
		}
	}
	if len(moved) == 0 {
		t.Fatalf("no partition moved to %s", ownerName)
	}
	// Counted by the new owner, and streamed through the members the
	// clients asked.
	var more []testkit.Record
	for _, k := range moved {
		more = append(more, sseRecords(k, 3)...)
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more)
	for _, k := range moved {
		streams[k].waitValues(t, time.Minute, map[string]int64{k: 3})
		sseCheckStream(t, streams[k], k, false)
	}
	for _, k := range moved {
		fanIn.waitValues(t, time.Minute, map[string]int64{k: 3})
	}
	if _, done, err := fanIn.snapshot(); done {
		t.Errorf("prefix fan-in ended: %v", err)
	}
	sseCheckStream(t, fanIn, "sse-", true)
	for k, s := range streams {
		if _, done, err := s.snapshot(); done {
			t.Errorf("stream of %q ended (%v); its partition %d was on %s", k, err, parts[k], owners[k])
		}
	}
	t.Logf("partitions that moved back to %s: keys %v", ownerName, moved)
}

// sseStalledClient subscribes over raw TCP with a small receive buffer,
// reads the answer's head and then never a byte of the stream. A 503 (a
// partition still restoring after a late rebalance that readiness did not
// wait for) is asked again, for a while, as sseSubscribeRetrying does.
func sseStalledClient(t *testing.T, u string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn := testkit.StalledStream(t, u)
		head := testkit.ReadHead(t, conn, 30*time.Second)
		switch {
		case strings.HasPrefix(head, "HTTP/1.1 200 "):
			return conn
		case strings.HasPrefix(head, "HTTP/1.1 503 ") && time.Now().Before(deadline):
			conn.Close()
			time.Sleep(time.Second) // abacus's Retry-After, at most a second
		default:
			t.Fatalf("subscribe %s: %q; want a 200", u, head)
		}
	}
}

// sseReader is one of many subscribers: it keeps only what the checks need.
type sseReader struct {
	key    string
	prefix bool
	mu     sync.Mutex
	first  bool             // the first count event came
	last   map[string]int64 // key -> last value
	events int
	bad    []string // what went wrong
	err    error
	done   bool
}

func (r *sseReader) run(s io.Reader) {
	err := readSSE(s, func(b sseBlock) bool {
		if b.Event != "count" {
			if b.Event != "" {
				r.fail("event %q: %q", b.Event, b.Data)
			}
			return true
		}
		var d sseCountData
		if err := json.Unmarshal([]byte(b.Data), &d); err != nil {
			r.fail("bad data %q", b.Data)
			return true
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.first, r.events = true, r.events+1
		if r.prefix && !strings.HasPrefix(d.Key, r.key) || !r.prefix && d.Key != r.key {
			r.bad = append(r.bad, fmt.Sprintf("event of key %q", d.Key))
		}
		if prev, ok := r.last[d.Key]; ok && d.Value <= prev {
			r.bad = append(r.bad, fmt.Sprintf("%q went from %d to %d", d.Key, prev, d.Value))
		}
		r.last[d.Key] = d.Value
		return true
	})
	r.mu.Lock()
	r.err, r.done = err, true
	r.mu.Unlock()
}

func (r *sseReader) fail(format string, a ...any) {
	r.mu.Lock()
	r.bad = append(r.bad, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// Acceptance 2: 1,000 subscribers on one instance and one client that
// never reads: every reading subscriber ends on the final value; the
// stalled one is dropped and counted, and held nobody up.
func TestSSEThousandSubscribers(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PEER_URL_TEMPLATE": "http://127.0.0.1:1"}})
	in.WaitReady(time.Minute)

	const subscribers, hot = 1000, 20
	transport := &http.Transport{
		MaxConnsPerHost: subscribers + 10, MaxIdleConnsPerHost: subscribers + 10,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second, DisableCompression: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	readers := make([]*sseReader, subscribers)
	for i := range readers {
		r := &sseReader{key: fmt.Sprintf("hot-%02d", i%hot), last: map[string]int64{}}
		if i%100 == 99 {
			r.key, r.prefix = "hot-1", true // hot-1, hot-10 ... hot-19
		}
		readers[i] = r
	}
	// A prefix stream needs the instance's view of the group, which can
	// come a moment after it is ready (503 starting until then).
	testkit.Eventually(t, time.Minute, func() error {
		if v, _, _ := in.Cluster(); len(v.Members) != 1 || len(v.Members[0].Partitions) != 4 {
			return fmt.Errorf("cluster view %+v, want abacus-0 owning 4 partitions", v)
		}
		return nil
	})
	// Connect them, 50 at a time.
	began := time.Now()
	sem := make(chan struct{}, 50)
	var connectErr error
	var errMu sync.Mutex
	for _, r := range readers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := sseURL(in, r.key, r.prefix)
			resp, err := testkit.OpenStream(ctx, client, u, nil)
			<-sem
			if err != nil {
				errMu.Lock()
				connectErr = errors.Join(connectErr, fmt.Errorf("subscribe %s: %w", u, err))
				errMu.Unlock()
				return
			}
			defer resp.Body.Close()
			r.run(resp.Body)
		}()
	}
	testkit.Eventually(t, time.Minute, func() error {
		waiting := 0
		for _, r := range readers {
			r.mu.Lock()
			if !r.first && !r.prefix {
				waiting++
			}
			r.mu.Unlock()
		}
		errMu.Lock()
		defer errMu.Unlock()
		if connectErr != nil {
			t.Fatal(connectErr)
		}
		if waiting > 0 {
			return fmt.Errorf("%d subscribers have no first value yet", waiting)
		}
		// A prefix subscription takes a place per partition (4).
		return atLeastMetric(in, "abacus_sse_subscribers", subscribers+subscribers/100*3)
	})
	// The stalled client follows every key, so it has the most to be sent.
	// (It comes after the prefix readers, which show that the instance
	// knows its cluster view, without which a prefix subscription is 503.)
	stalled := sseStalledClient(t, sseURL(in, "", true))
	testkit.Eventually(t, 30*time.Second, func() error {
		return atLeastMetric(in, "abacus_sse_subscribers", subscribers+subscribers/100*3+4)
	})
	t.Logf("%d subscribers (and the stalled one) open after %s", subscribers, time.Since(began).Round(time.Millisecond))

	// Hot keys in batches, and a flood of long distinct keys that only
	// the stalled client follows: 7.5 MB of events, more than the socket
	// buffers of a loopback connection hold (the sender's grows to 4 MB),
	// so that writes to it block.
	truth := map[string]int64{}
	pad := strings.Repeat("x", 1500)
	began = time.Now()
	for batch := range 5 {
		var recs []testkit.Record
		for k := range hot {
			key := fmt.Sprintf("hot-%02d", k)
			n := 10 + k + batch
			recs = append(recs, sseRecords(key, n)...)
			truth[key] += int64(n)
		}
		for f := range 1000 {
			recs = append(recs, testkit.Record{Key: fmt.Appendf(nil, "flood-%s-%d-%04d", pad, batch, f), Value: []byte("x")})
		}
		testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
	}
	testkit.Eventually(t, 2*time.Minute, func() error {
		behind := 0
		var example string
		for _, r := range readers {
			r.mu.Lock()
			for k, v := range truth {
				if r.prefix && !strings.HasPrefix(k, r.key) || !r.prefix && k != r.key {
					continue
				}
				if r.last[k] != v {
					if behind++; behind == 1 {
						example = fmt.Sprintf("%q at %d, want %d (ended %v: %v)", k, r.last[k], v, r.done, r.err)
					}
				}
			}
			r.mu.Unlock()
		}
		if behind > 0 {
			return fmt.Errorf("%d subscriptions behind, e.g. %s", behind, example)
		}
		return nil
	})
	t.Logf("every subscriber on its final value %s after the first produce", time.Since(began).Round(time.Millisecond))
	events := 0
	for _, r := range readers {
		r.mu.Lock()
		events += r.events
		if len(r.bad) > 0 {
			t.Errorf("subscriber of %q (prefix %v): %v", r.key, r.prefix, r.bad[:min(3, len(r.bad))])
		}
		if r.done {
			t.Errorf("subscriber of %q (prefix %v) ended: %v", r.key, r.prefix, r.err)
		}
		r.mu.Unlock()
	}
	// The stalled client is let go: a write to it times out, and the
	// member hangs up on the partitions' streams it merged for it.
	testkit.Eventually(t, time.Minute, func() error {
		if v, err := in.Metric("abacus_sse_subscribers"); err != nil || v != subscribers+subscribers/100*3 {
			return fmt.Errorf("abacus_sse_subscribers %v (%v), want %d", v, err, subscribers+subscribers/100*3)
		}
		return nil
	})
	t.Logf("%d events to %d subscribers; dropped: overflow %v, write_timeout %v; coalesced %v; rejected %v",
		events, subscribers,
		metric(t, in, "abacus_sse_subscribers_dropped_total", `reason="overflow"`),
		metric(t, in, "abacus_sse_subscribers_dropped_total", `reason="write_timeout"`),
		metric(t, in, "abacus_sse_updates_coalesced_total"), metric(t, in, "abacus_sse_subscribers_rejected_total"))
	if got := metric(t, in, "abacus_sse_subscribers_rejected_total"); got != 0 {
		t.Errorf("%v subscriptions rejected", got)
	}
	// Its connection was closed: what the socket buffers held, then EOF.
	_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	held, err := io.Copy(io.Discard, stalled)
	if err != nil {
		t.Errorf("the stalled client's connection is still open after the drop (%d bytes read): %v", held, err)
	}
	t.Logf("the stalled client's connection held %d bytes, then EOF", held)
}

// The answers that are not streams: a full instance refuses with 503,
// too_many_subscribers and Retry-After (and counts it); bad queries are
// 400; an unknown store 404. Browsers from an allowed origin get CORS
// headers on the stream. An idle stream gets heartbeats.
func TestSSERefusals(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{
		"ABACUS_PEER_URL_TEMPLATE": "http://127.0.0.1:1",
		"ABACUS_MAX_SUBSCRIBERS":   "2",
		"ABACUS_CORS_ORIGINS":      "http://app.example",
	}})
	in.WaitReady(time.Minute)

	one := sseMustSubscribe(t, sseURL(in, "a", false), http.Header{"Origin": {"http://app.example"}})
	if got := one.resp.Header.Get("Access-Control-Allow-Origin"); got != "http://app.example" {
		t.Errorf("Access-Control-Allow-Origin %q on a stream for an allowed origin", got)
	}
	if got := one.resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q on a stream", got)
	}
	// Asked with local=true, a prefix takes one place on the member; asked
	// without, one on each partition's owner (here: 4).
	two := sseMustSubscribe(t, sseURL(in, "", true)+"&local=true", nil)
	one.waitValues(t, 30*time.Second, map[string]int64{"a": 0})
	// A 200 may still wait for the member's view of its cluster: the
	// places are taken once both streams are served.
	testkit.Eventually(t, 30*time.Second, func() error { return atLeastMetric(in, "abacus_sse_subscribers", 2) })
	_, a, err := sseOpen(sseClient, sseURL(in, "b", false), nil)
	if err != nil || a.Status != 503 || a.Code != "too_many_subscribers" || a.RetryAfter == "" {
		t.Errorf("a third subscription: %s %v; want 503 too_many_subscribers with Retry-After", a, err)
	}
	if got := metric(t, in, "abacus_sse_subscribers_rejected_total"); got != 1 {
		t.Errorf("abacus_sse_subscribers_rejected_total %v, want 1", got)
	}
	// A place frees up when a subscriber leaves.
	two.close()
	testkit.Eventually(t, 10*time.Second, func() error {
		s, a, err := sseOpen(sseClient, sseURL(in, "b", false), nil)
		if err != nil || s == nil {
			return fmt.Errorf("after one left: %s %v", a, err)
		}
		s.close()
		return nil
	})

	for _, tc := range []struct {
		path string
		code int
		err  string
	}{
		{"/api/v1/stores/counts-store/subscribe", 400, "bad_query"},
		{"/api/v1/stores/counts-store/subscribe?key=a&prefix=b", 400, "bad_query"},
		{"/api/v1/stores/counts-store/subscribe?key=", 400, "bad_key"},
		{"/api/v1/stores/counts-store/subscribe?key=%C3%28", 400, "bad_key"},
		{"/api/v1/stores/counts-store/subscribe?key=" + strings.Repeat("k", 4097), 400, "bad_key"},
		{"/api/v1/stores/counts-store/subscribe?key=a&local=maybe", 400, "bad_parameter"},
		{"/api/v1/stores/nope/subscribe?key=a", 404, "unknown_store"},
	} {
		_, a, err := sseOpen(sseClient, in.URL+tc.path, nil)
		if err != nil || a.Status != tc.code || a.Code != tc.err {
			t.Errorf("GET %.80s: %s %v; want %d %s", tc.path, a, err, tc.code, tc.err)
		}
	}
	if got := metric(t, in, "abacus_sse_subscribers"); got != 1 {
		t.Errorf("abacus_sse_subscribers %v, want 1", got)
	}

	// An idle stream gets heartbeats (": ping", every 15 s).
	testkit.Eventually(t, 25*time.Second, func() error {
		blocks, done, err := one.snapshot()
		if done {
			t.Fatalf("the idle stream ended: %v", err)
		}
		for _, b := range blocks {
			if b.Comment == "ping" && b.Event == "" && b.Data == "" {
				return nil
			}
		}
		return fmt.Errorf("no heartbeat yet in %+v", blocks)
	})
	sseCheckStream(t, one, "a", false)
}

// serverSocketState is the TCP state (as in /proc/net/tcp: 01 established,
// 04 FIN-WAIT-1, ...) of the server side of a client's connection, or ""
// when there is none any more.
func serverSocketState(t *testing.T, client net.Conn) string {
	t.Helper()
	hexAddr := func(a net.Addr) string {
		ta := a.(*net.TCPAddr)
		ip := ta.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
	}
	local, remote := hexAddr(client.RemoteAddr()), hexAddr(client.LocalAddr())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == local && f[2] == remote {
			return f[3]
		}
	}
	return ""
}

// A client that stops reading a prefix subscription served by fan-in is
// let go by the member it asked, as the same client asking one member
// directly is: once the flood that fills its buffers is counted, within
// about the write timeout (one for the write that blocks, or for the end
// of the answer once a member dropped its part), its connection is closed
// (Connection: close: no idle keep-alive with the unread bytes), and every
// member has dropped its part of the stream (the asked member hangs up on
// them).
func TestSSEStalledFanInClientReleased(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)
	direct := sseStalledClient(t, sseURL(pods[0], "", true)+"&local=true")
	fanIn := sseStalledClient(t, sseURL(pods[0], "", true))
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := sseOpenStreams(t, pods); n != 5 { // direct, and the fan-in's part of each partition
			return fmt.Errorf("%v streams open, want 5", n)
		}
		return nil
	})
	// About 22 MB of events: more than the socket buffers hold on every
	// hop (a loopback sender's grows to 4 MB, a receiver's further).
	const batches, perBatch = 5, 3000
	pad := strings.Repeat("x", 1500)
	for batch := range batches {
		var recs []testkit.Record
		for f := range perBatch {
			recs = append(recs, testkit.Record{Key: fmt.Appendf(nil, "flood-%s-%d-%04d", pad, batch, f), Value: []byte("x")})
		}
		testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
	}
	testkit.Eventually(t, 2*time.Minute, func() error {
		sum := 0.0
		for _, in := range pods {
			sum += metric(t, in, "abacus_records_processed_total")
		}
		if sum < batches*perBatch {
			return fmt.Errorf("%v of %d records counted", sum, batches*perBatch)
		}
		return nil
	})
	counted := time.Now()
	// Publishing follows the next commit (200 ms here); the rest is slack
	// for a loaded machine and the race detector.
	within := 2*subscribe.DefaultWriteTimeout + 5*time.Second
	testkit.Eventually(t, within, func() error {
		for name, c := range map[string]net.Conn{"direct": direct, "fan-in": fanIn} {
			if st := serverSocketState(t, c); st == "01" {
				return fmt.Errorf("the %s stalled client's connection is still established (%s)", name, sseStreamsByPod(t, pods))
			}
		}
		if n := sseOpenStreams(t, pods); n != 0 {
			return fmt.Errorf("%v streams still open (%s)", n, sseStreamsByPod(t, pods))
		}
		return nil
	})
	t.Logf("both stalled clients released, every part dropped, %s after the flood was counted (bound %s); %s",
		time.Since(counted).Round(time.Millisecond), within, sseStreamsByPod(t, pods))
}

// sseOpenStreams is the number of streams the members serve.
func sseOpenStreams(t *testing.T, pods []*testkit.Instance) float64 {
	t.Helper()
	sum := 0.0
	for _, in := range pods {
		sum += metric(t, in, "abacus_sse_subscribers")
	}
	return sum
}

func sseStreamsByPod(t *testing.T, pods []*testkit.Instance) string {
	t.Helper()
	var out []string
	for _, in := range pods {
		out = append(out, fmt.Sprintf("%s: %v open, dropped %v overflow, %v write_timeout", in.Name,
			metric(t, in, "abacus_sse_subscribers"),
			metric(t, in, "abacus_sse_subscribers_dropped_total", `reason="overflow"`),
			metric(t, in, "abacus_sse_subscribers_dropped_total", `reason="write_timeout"`)))
	}
	return strings.Join(out, "; ")
}

// A prefix subscription opened while one of a member's partitions is
// restoring must not get a first snapshot without that partition's keys:
// nothing would tell the client later (a partition that arrives or
// finishes restoring ends no stream), so keys of that partition that do
// not change would never be shown. A scan in the same state answers 503
// incomplete; the subscription answers 200, says it waits, and streams
// every key once the partition is restored.
func TestSSEPrefixWaitsWhileRestoring(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	pods := trio(t, b.Addr(), nil)
	truth := map[string]int64{}
	var recs []testkit.Record
	for i := range 2000 {
		k := fmt.Sprintf("r-%04d", i)
		recs = append(recs, testkit.Record{Key: []byte(k), Value: []byte("x")})
		truth[k] = 1
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
	waitCounts(t, time.Minute, pods[:1], truth, false)

	// Hold every fetch, so the partitions of the member about to die stay
	// restoring on their new owners.
	c := b.Cluster()
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-release:
		default:
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	pods[2].Kill()
	survivors := pods[:2]
	var active, restoringParts []int32
	testkit.Eventually(t, time.Minute, func() error {
		active, restoringParts = nil, nil
		for _, in := range survivors {
			var st struct {
				ActiveTasks    []struct{ Partition int32 } `json:"active_tasks"`
				RestoringTasks []struct{ Partition int32 } `json:"restoring_tasks"`
			}
			code, body, err := in.Get("/api/v1/streams/status")
			if err != nil || code != 200 || json.Unmarshal(body, &st) != nil {
				return fmt.Errorf("status of %s: %d %s %v", in.Name, code, body, err)
			}
			for _, tk := range st.ActiveTasks {
				active = append(active, tk.Partition)
			}
			for _, tk := range st.RestoringTasks {
				restoringParts = append(restoringParts, tk.Partition)
			}
		}
		if len(active)+len(restoringParts) != 4 || len(restoringParts) == 0 {
			return fmt.Errorf("survivors: %v active, %v restoring", active, restoringParts)
		}
		return nil
	})
	code, body, _ := survivors[0].Get("/api/v1/stores/counts-store/keys?prefix=r-")
	t.Logf("partitions %v active, %v restoring; a scan meanwhile: %d %.200s", active, restoringParts, code, body)

	// A prefix subscription through a survivor is answered 200 at once.
	// The active partitions stream their keys; the restoring ones wait,
	// saying so, with no snapshot that would lack their keys; once they
	// are restored they stream every key.
	sub, a, err := sseOpen(sseClient, sseURL(survivors[0], "r-", true), nil)
	if err != nil || sub == nil {
		t.Fatalf("subscribe while partitions %v restore: %s %v; want 200", restoringParts, a, err)
	}
	defer sub.close()
	testkit.Eventually(t, 30*time.Second, func() error {
		blocks, done, err := sub.snapshot()
		if done {
			t.Fatalf("the waiting stream ended: %v", err)
		}
		waiting := false
		for _, bl := range blocks {
			waiting = waiting || strings.HasPrefix(bl.Comment, "waiting: partition ")
		}
		seen := map[int32]bool{}
		for _, e := range sub.counts(t) {
			seen[e.Partition] = true
		}
		if !waiting || len(seen) != len(active) {
			return fmt.Errorf("waiting comment: %v; keys of partitions %v, want %v", waiting, seen, active)
		}
		return nil
	})
	for _, e := range sub.counts(t) {
		if slices.Contains(restoringParts, e.Partition) {
			t.Fatalf("%+v while partition %d restores; want none of its keys", e, e.Partition)
		}
	}
	open()
	sub.waitValues(t, time.Minute, truth)
}
