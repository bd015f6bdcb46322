package subscribe

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// waitFor is how long a test waits for a condition before it fails.
const waitFor = 30 * time.Second

const testPartitions = 4

// memStore is the committed store behind a hub in tests; commit writes it
// and then publishes, as the processor does.
type memStore struct {
	mu      sync.Mutex
	values  map[string]int64
	offsets [testPartitions]int64
}

func newMemStore() *memStore { return &memStore{values: map[string]int64{}} }

func partitionOf(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % testPartitions)
}

// commit stores the counts and publishes them as one batch. Like the
// processor's committer it must not run concurrently with itself.
func (m *memStore) commit(h *Hub, counts ...kv) []abacus.Update {
	m.mu.Lock()
	ups := make([]abacus.Update, 0, len(counts))
	for _, c := range counts {
		p := partitionOf(c.k)
		m.offsets[p]++
		m.values[c.k] = c.v
		ups = append(ups, abacus.Update{Key: c.k, Value: c.v, Partition: p, Offset: m.offsets[p]})
	}
	m.mu.Unlock()
	h.Publish(ups)
	return ups
}

type kv struct {
	k string
	v int64
}

func (m *memStore) source() Source {
	return Source{
		Current: func(key string) (int64, int32, bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			v, ok := m.values[key]
			return v, partitionOf(key), ok, nil
		},
		CurrentPrefix: func(prefix string, partition int32, fn func(string, int64, int32) bool) error {
			m.mu.Lock()
			var keys []string
			for k := range m.values {
				if strings.HasPrefix(k, prefix) && (partition < 0 || partitionOf(k) == partition) {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			vals := make([]int64, len(keys))
			for i, k := range keys {
				vals[i] = m.values[k]
			}
			m.mu.Unlock()
			for i, k := range keys {
				if !fn(k, vals[i], partitionOf(k)) {
					break
				}
			}
			return nil
		},
	}
}

// testHub is a running hub with its store, registry and HTTP server.
type testHub struct {
	*Hub
	store *memStore
	reg   *prometheus.Registry
	srv   *httptest.Server
	stop  func() // cancels Run and waits for it
}

type hubOption func(*Config, *serverOptions)

type serverOptions struct{ sendBuffer int }

// withSmallSendBuffers makes the server's sockets' send buffers small, so
// that a client that stops reading blocks the server's writes soon.
func withSmallSendBuffers() hubOption {
	return func(_ *Config, o *serverOptions) { o.sendBuffer = 4096 }
}

func withConfig(f func(*Config)) hubOption {
	return func(c *Config, _ *serverOptions) { f(c) }
}

func newTestHub(t testing.TB, opts ...hubOption) *testHub {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{Registerer: reg}
	var so serverOptions
	for _, o := range opts {
		o(&cfg, &so)
	}
	h := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	th := &testHub{Hub: h, store: newMemStore(), reg: reg}
	mux := http.NewServeMux()
	mux.Handle("/subscribe", h.Handler(th.store.source()))
	th.srv = httptest.NewUnstartedServer(mux)
	if so.sendBuffer > 0 {
		th.srv.Listener = &smallBufferListener{Listener: th.srv.Listener, size: so.sendBuffer}
	}
	th.srv.Start()
	var once sync.Once
	th.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		th.stop()
		th.srv.CloseClientConnections()
		th.srv.Close()
	})
	return th
}

type smallBufferListener struct {
	net.Listener
	size int
}

func (l *smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}

func (th *testHub) url(q string) string { return th.srv.URL + "/subscribe?" + q }

func keyQuery(k string) string    { return "key=" + url.QueryEscape(k) }
func prefixQuery(p string) string { return "prefix=" + url.QueryEscape(p) }

// frame is one SSE block: the fields up to a blank line.
type frame struct {
	ID, Event, Data, Retry string
	Comments               []string
}

// countData is a count event's payload.
type countData struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
}

func (f frame) count(t testing.TB) countData {
	t.Helper()
	if f.Event != EventCount {
		t.Fatalf("frame %+v is not a count event", f)
	}
	var c countData
	if err := json.Unmarshal([]byte(f.Data), &c); err != nil {
		t.Fatalf("count data %q: %v", f.Data, err)
	}
	if want := fmt.Sprintf(`{"key":%s,"value":%d,"partition":%d}`, mustJSON(c.Key), c.Value, c.Partition); f.Data != want {
		t.Fatalf("count data %q is not laid out as %q", f.Data, want)
	}
	return c
}

func mustJSON(s string) string { b, _ := json.Marshal(s); return string(b) }

// sseConn is one client stream; frames arrive on an unbuffered channel,
// so a test that stops receiving stops reading the socket.
type sseConn struct {
	resp   *http.Response
	frames chan frame
	done   chan error // the read loop's end: nil at EOF
	ctx    context.Context
	cancel context.CancelFunc
}

// testClient's connections have small receive buffers, so that a stream
// the test stops reading soon blocks the server's writes.
var testClient = &http.Client{Transport: &http.Transport{
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	},
	MaxIdleConnsPerHost: -1,
}}

// plainClient's connections have the system's buffer sizes.
var plainClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}

// subscribe opens a stream and fails the test unless it answers 200.
func subscribe(t testing.TB, u string, header http.Header) *sseConn {
	t.Helper()
	return subscribeWith(t, testClient, u, header)
}

func subscribeWith(t testing.TB, client *http.Client, u string, header http.Header) *sseConn {
	t.Helper()
	c, resp := dialWith(t, client, u, header)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", u, resp.Status, body)
	}
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(name); got != want {
			t.Fatalf("header %s = %q, want %q", name, got, want)
		}
	}
	if !resp.Close {
		t.Fatal("no Connection: close: a stream's connection must end with it")
	}
	go c.read()
	return c
}

func dial(t testing.TB, u string, header http.Header) (*sseConn, *http.Response) {
	t.Helper()
	return dialWith(t, testClient, u, header)
}

func dialWith(t testing.TB, client *http.Client, u string, header http.Header) (*sseConn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := testkit.NewGet(ctx, u, header)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", u, err)
	}
	c := &sseConn{resp: resp, frames: make(chan frame), done: make(chan error, 1), ctx: ctx, cancel: cancel}
	t.Cleanup(c.close)
	return c, resp
}

func (c *sseConn) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

func (c *sseConn) read() {
	defer close(c.frames)
	r := bufio.NewReader(c.resp.Body)
	var f frame
	var seen bool
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			c.done <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				select {
				case c.frames <- f:
				case <-c.ctx.Done():
					c.done <- c.ctx.Err()
					return
				}
			}
			f, seen = frame{}, false
			continue
		}
		seen = true
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			f.Comments = append(f.Comments, strings.TrimPrefix(rest, " "))
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			f.Data = value
		case "retry":
			f.Retry = value
		}
	}
}

// next is the next frame; ok is false at the end of the stream.
func (c *sseConn) next(t testing.TB) (f frame, ok bool) {
	t.Helper()
	select {
	case f, ok = <-c.frames:
		return f, ok
	case <-time.After(waitFor):
		t.Fatalf("no frame within %v", waitFor)
		return frame{}, false
	}
}

// nextEvent is the next frame that is an event (not a retry field or a
// heartbeat).
func (c *sseConn) nextEvent(t testing.TB) frame {
	t.Helper()
	for {
		f, ok := c.next(t)
		if !ok {
			t.Fatalf("stream ended while waiting for an event")
		}
		if f.Event != "" || f.Data != "" {
			return f
		}
	}
}

// expectEnd waits for the stream to end.
func (c *sseConn) expectEnd(t testing.TB) {
	t.Helper()
	for {
		f, ok := c.next(t)
		if !ok {
			return
		}
		if f.Event != "" {
			t.Fatalf("event %+v where the stream should end", f)
		}
	}
}

// metric is the value of the counter or gauge name with the labels given
// as name, value pairs.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if hasLabels(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// keyIn finds a key of partition p with the prefix.
func keyIn(p int32, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if partitionOf(k) == p {
			return k
		}
	}
}

// dialRaw sends a subscription request over a plain TCP connection with a
// small receive buffer and never reads the answer.
func dialRaw(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(1024)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// settle waits until the hub has fanned out every batch published.
func (th *testHub) settle(t testing.TB) {
	t.Helper()
	eventually(t, "the hub to fan out", func() bool { return th.fanned.Load() >= th.published.Load() })
}
