package subscribe

import (
	"log/slog"
	"sync"
	"time"
)

// rateLogEvery is the least time between two logs of one kind; the ones
// in between are counted into the next.
const rateLogEvery = 10 * time.Second

// rateLog logs a repeating warning at most once per rateLogEvery, saying
// how many it held back. A whole fleet of clients dropped at once makes
// one line, not thousands; the metrics count each one.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLog) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < rateLogEvery {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	l.Warn(msg, append(args, "also_since_last_log", n)...)
}
