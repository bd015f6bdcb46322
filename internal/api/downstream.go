package api

import (
	"net/http"
	"sync"
	"time"
)

// DefaultStreamWriteTimeout is Config.StreamWriteTimeout's default, the
// subscribe hub's own write timeout.
const DefaultStreamWriteTimeout = 10 * time.Second

// downstream writes a relayed or merged event stream to the client that
// asked for it. Every write, and the end of the answer, gets the write
// timeout, so a client that stops reading is let go within it, as the hub
// lets go of its own slow subscribers. After the first failed write the
// client is gone and every later write is refused at once, so no part of a
// merged stream blocks on it. Its methods may be called from several
// goroutines.
type downstream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration

	mu   sync.Mutex // one write at a time, whole events
	gone bool
}

func newDownstream(w http.ResponseWriter, timeout time.Duration) *downstream {
	return &downstream{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// markStream sets the headers of a 200 event-stream answer.
func markStream(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The connection ends with the stream. Kept alive, a finished stream's
	// connection would wait, idle, for a next request from a client that
	// may have stopped reading, with what the socket buffers still hold,
	// until the server's idle timeout (2 min). A client reconnects with a
	// new request anyway: keep-alive would save it only a handshake.
	h.Set("Connection", "close")
}

// open sends the status and headers; a 200 is marked as a stream.
func (d *downstream) open(status int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if status == http.StatusOK {
		markStream(d.w.Header())
	}
	d.arm()
	d.w.WriteHeader(status)
	return d.flushLocked()
}

// write sends p and flushes it, unless the client is gone; it reports
// whether the client took it.
func (d *downstream) write(p []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return false
	}
	d.arm()
	if _, err := d.w.Write(p); err != nil {
		d.gone = true
		return false
	}
	return d.flushLocked()
}

// end gives the answer's last bytes, which net/http writes after the
// handler returns (the end of the chunked body), a write timeout of their
// own: the deadline of the last write may have passed during a quiet
// stream, and a client still reading must get a clean end. A client gone
// keeps its failed connection, which net/http then closes.
func (d *downstream) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.gone {
		d.arm()
	}
}

// arm sets the deadline of the next write; a ResponseWriter without
// deadlines (a test recorder) just has none.
func (d *downstream) arm() {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
}

func (d *downstream) flushLocked() bool {
	if d.rc.Flush() != nil {
		d.gone = true
	}
	return !d.gone
}
