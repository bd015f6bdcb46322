package subscribe

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// chunkBytes is about how much one write carries: each write gets its own
// deadline, so a long snapshot to a slow but live client is not cut short.
const chunkBytes = 32 << 10

// errKilled: the stream was ended without a last event.
var errKilled = errors.New("subscribe: stream ended")

// writer frames events onto one response, one deadline per write and a
// flush after each.
type writer struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	s         *stream
	timeout   time.Duration
	deadlines bool // the response supports write deadlines
	buf       []byte
}

func newWriter(w http.ResponseWriter, s *stream, timeout time.Duration) *writer {
	return &writer{w: w, rc: http.NewResponseController(w), s: s, timeout: timeout, deadlines: true}
}

// write sends b and flushes it, within the write timeout.
func (o *writer) write(b []byte) error {
	if !o.s.arm(o.rc, o.timeout, &o.deadlines) {
		return errKilled
	}
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.rc.Flush()
}

// begin sends the retry field and the snapshot; a windowed stream's
// ends with the SnapshotEnd comment of each partition in checkpoints.
func (o *writer) begin(retry time.Duration, snap []queued, truncated bool, limit int, checkpoints map[int32]int64) error {
	b := appendRetry(o.buf[:0], retry)
	for i := range snap {
		e := &snap[i]
		id := noID
		if !o.s.prefix {
			id = valueID
		}
		if e.windowed {
			b = appendWindow(b, e)
		} else {
			b = appendCount(b, e.Key, e.Value, e.Partition, 0, id)
		}
		if len(b) >= chunkBytes {
			if err := o.write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if truncated {
		b = append(b, ": "+SnapshotTruncated+" "...)
		b = strconv.AppendInt(b, int64(limit), 10)
		if o.s.windowed {
			b = append(b, " windows\n\n"...)
		} else {
			b = append(b, " keys\n\n"...)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(checkpoints)) {
		b = appendSnapshotEnd(b, p, checkpoints[p])
	}
	o.buf = b
	return o.write(b)
}

// updates sends a drained batch, each event with its id.
func (o *writer) updates(batch []queued) error {
	b := o.buf[:0]
	id := offsetID
	if !o.s.prefix {
		id = valueID
	}
	for i := range batch {
		e := &batch[i]
		if e.windowed {
			b = appendWindow(b, e)
		} else {
			b = appendCount(b, e.Key, e.Value, e.Partition, e.Offset, id)
		}
		if len(b) >= chunkBytes || i == len(batch)-1 {
			if err := o.write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if cap(b) <= 4*chunkBytes {
		o.buf = b
	}
	return nil
}
