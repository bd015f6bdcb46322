package lookup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The load generator speaks HTTP/1.1 itself over plain keep-alive TCP
// connections, one request in flight per connection: either a closed loop
// (the next request as soon as the answer is in, like wrk) or at a fixed
// total rate (each connection sends on its own schedule, like wrk2). A request is pre-rendered bytes and a response is read
// with a bufio.Reader into a reused buffer, so the client costs a fraction
// of what net/http's client would: on a 2-core machine every cycle the
// client spends is a cycle the servers do not get.

// request is one pre-rendered GET and what its answer must contain.
type request struct {
	raw  []byte // "GET ... HTTP/1.1\r\nHost: ...\r\n\r\n"
	want []byte // a substring the 200 body must hold; nil: any body
	kind kind   // for runs that mix kinds, the latencies are also kept per kind
}

// kind tells requests of a mixed run apart.
type kind uint8

const (
	kindOther kind = iota
	kindLocal
	kindForwarded
	numKinds
)

// newRequest renders a GET of path on host ("127.0.0.1:8080").
func newRequest(host, path string, want []byte) request {
	raw := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: abacus-lookup-bench\r\nAccept: application/json\r\n\r\n"
	return request{raw: []byte(raw), want: want}
}

// client is one keep-alive connection.
type client struct {
	addr string
	conn net.Conn
	r    *bufio.Reader
	body []byte
}

func dial(addr string, deadline time.Time) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	// One deadline for the connection's whole life bounds every read and
	// write without arming a timer per request.
	_ = c.SetDeadline(deadline)
	return &client{addr: addr, conn: c, r: bufio.NewReaderSize(c, 16<<10), body: make([]byte, 0, 4<<10)}, nil
}

func (c *client) close() { _ = c.conn.Close() }

var errBadResponse = errors.New("malformed HTTP response")

// do sends req and reads the whole answer. The body is valid until the
// next call. keep is false when the server asked to close.
func (c *client) do(raw []byte) (status int, body []byte, keep bool, err error) {
	if _, err = c.conn.Write(raw); err != nil {
		return 0, nil, false, err
	}
	return readResponse(c.r, c.body[:0])
}

// readResponse reads one HTTP/1.1 response from r, appending its body to
// buf; it understands Content-Length and chunked bodies.
func readResponse(r *bufio.Reader, buf []byte) (status int, body []byte, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("%w: header %q", errBadResponse, line)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		body, err = readChunked(r, buf)
	case length >= 0:
		body = slices.Grow(buf, length)[:length]
		_, err = io.ReadFull(r, body)
	default:
		// No length: the body runs to the end of the connection.
		keep = false
		var all []byte
		all, err = io.ReadAll(r)
		body = append(buf, all...)
	}
	if err != nil {
		return 0, nil, false, err
	}
	return status, body, keep, nil
}

func readChunked(r *bufio.Reader, buf []byte) ([]byte, error) {
	for range 1 << 20 {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: chunk size %q", errBadResponse, line)
		}
		if n == 0 {
			// Trailers end with an empty line.
			for range 1024 {
				line, err = r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(line) <= 2 {
					return buf, nil
				}
			}
			return nil, fmt.Errorf("%w: endless trailers", errBadResponse)
		}
		start := len(buf)
		buf = slices.Grow(buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, err
		}
		if _, err := r.Discard(2); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: endless chunks", errBadResponse)
}

// lateBy is how far behind its slot a fixed-rate send may start before it
// counts as late (the client could not keep the schedule).
const lateBy = time.Millisecond

// loadSpec is one run.
type loadSpec struct {
	addr     string // host:port of the member asked
	reqs     []request
	conns    int
	warmup   time.Duration // run but not measured
	duration time.Duration // measured
	// maxPerConn bounds the requests of one connection (0: 50 million).
	maxPerConn int
	// rate is the total requests/s to send, spread evenly over the
	// connections; 0 is a closed loop.
	rate float64
	// onWindow is called when the measured window starts and when it
	// ends (with start false), from the timing goroutine.
	onWindow func(start bool)
}

// loadResult is what a run measured.
type loadResult struct {
	requests  int // completed requests in the window (any status)
	ok        int // 200 with the expected body
	non200    map[int]int
	wrongBody int // 200 whose body lacks the expected substring
	ioErrors  int // connection errors (each costs a reconnect)
	late      int // fixed rate: sends more than lateBy behind their schedule
	window    time.Duration
	lat       latencies // of every request in the window, sorted
	byKind    [numKinds]latencies
	sample    string // one failed answer, for the log
}

func (r loadResult) errors() int {
	n := r.wrongBody + r.ioErrors
	for _, c := range r.non200 {
		n += c
	}
	return n
}

func (r loadResult) rps() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(r.requests) / r.window.Seconds()
}

// pct is the nearest-rank percentile p (0..100) of all latencies.
func (r loadResult) pct(p float64) time.Duration { return r.lat.pct(p) }

// latencies are sorted durations.
type latencies []time.Duration

// pct is the nearest-rank percentile p (0..100).
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l))*p/100+0.999999) - 1
	return l[max(0, min(i, len(l)-1))]
}

// runLoad runs spec and returns its result. Every loop is bounded by the
// deadline and by a request count; a connection that keeps failing gives up.
func runLoad(spec loadSpec) (loadResult, error) {
	if spec.maxPerConn <= 0 {
		spec.maxPerConn = 50_000_000
	}
	begin := time.Now()
	measureFrom := begin.Add(spec.warmup)
	end := measureFrom.Add(spec.duration)
	connDeadline := end.Add(10 * time.Second)

	type workerOut struct {
		late      int
		lat       []time.Duration
		byKind    [numKinds][]time.Duration
		non200    map[int]int
		wrongBody int
		ioErrors  int
		sample    string
		err       error
	}
	outs := make([]workerOut, spec.conns)
	var wg sync.WaitGroup
	// Expected requests per connection in the window, to size the slices.
	guess := int(spec.duration.Seconds()*60_000)/spec.conns + 1024
	for w := range spec.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			o.non200 = map[int]int{}
			o.lat = make([]time.Duration, 0, guess)
			rng := rand.New(rand.NewPCG(uint64(w)+1, 42))
			i := rng.IntN(len(spec.reqs))
			var c *client
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			reconnects := 0
			// Fixed rate: this connection's schedule, staggered.
			var interval time.Duration
			var next time.Time
			if spec.rate > 0 {
				interval = time.Duration(float64(spec.conns) / spec.rate * float64(time.Second))
				next = begin.Add(interval * time.Duration(w) / time.Duration(spec.conns))
			}
			for n := 0; n < spec.maxPerConn; n++ {
				if c == nil {
					if reconnects > 100 {
						o.err = fmt.Errorf("connection %d: more than 100 reconnects", w)
						return
					}
					reconnects++
					var err error
					if c, err = dial(spec.addr, connDeadline); err != nil {
						o.err = err
						return
					}
				}
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				if interval > 0 {
					// Latency is taken from the actual send; a send far
					// behind its slot is counted, and missed slots are
					// skipped rather than sent in a burst.
					if t0.Sub(next) > lateBy && !t0.Before(measureFrom) {
						o.late++
					}
					next = next.Add(interval)
					if t0.After(next) {
						next = t0
					}
				}
				req := spec.reqs[i]
				i++
				if i == len(spec.reqs) {
					i = 0
				}
				status, body, keep, err := c.do(req.raw)
				d := time.Since(t0)
				measured := !t0.Before(measureFrom)
				if err != nil {
					if measured {
						o.ioErrors++
						if o.sample == "" {
							o.sample = "I/O: " + err.Error()
						}
					}
					c.close()
					c = nil
					continue
				}
				if measured {
					o.lat = append(o.lat, d)
					if req.kind != kindOther {
						o.byKind[req.kind] = append(o.byKind[req.kind], d)
					}
					switch {
					case status != 200:
						o.non200[status]++
						if o.sample == "" {
							o.sample = fmt.Sprintf("%d %s", status, body)
						}
					case req.want != nil && !bytes.Contains(body, req.want):
						o.wrongBody++
						if o.sample == "" {
							o.sample = fmt.Sprintf("want %s in %s", req.want, body)
						}
					}
				}
				if !keep {
					c.close()
					c = nil
				}
			}
		}()
	}
	// The timing goroutine marks the window for the CPU accounting; the
	// window ends early if every connection reached its request bound.
	done := make(chan struct{})
	timer := make(chan time.Duration)
	go func() {
		wait := func(t time.Time) {
			select {
			case <-time.After(time.Until(t)):
			case <-done:
			}
		}
		wait(measureFrom)
		from := time.Now()
		if spec.onWindow != nil {
			spec.onWindow(true)
		}
		wait(end)
		window := time.Since(from)
		if spec.onWindow != nil {
			spec.onWindow(false)
		}
		timer <- window
	}()
	wg.Wait()
	close(done)
	res := loadResult{non200: map[int]int{}, window: min(spec.duration, <-timer)}
	var errs []error
	for _, o := range outs {
		if o.err != nil {
			errs = append(errs, o.err)
		}
		res.lat = append(res.lat, o.lat...)
		for k := range o.byKind {
			res.byKind[k] = append(res.byKind[k], o.byKind[k]...)
		}
		for k, v := range o.non200 {
			res.non200[k] += v
		}
		res.wrongBody += o.wrongBody
		res.ioErrors += o.ioErrors
		res.late += o.late
		if res.sample == "" {
			res.sample = o.sample
		}
	}
	res.requests = len(res.lat)
	res.ok = res.requests - res.wrongBody
	for _, v := range res.non200 {
		res.ok -= v
	}
	slices.Sort(res.lat)
	for k := range res.byKind {
		slices.Sort(res.byKind[k])
	}
	return res, errors.Join(errs...)
}
