package standby

import (
	"fmt"
	"strconv"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A standby keeps the task's windowed stores warm too: the runner's one
// consumer tails each windowed store's changelog partition beside the
// counts', into the store's own slice with its own checkpoint, and raises
// the store's stream time to what the records carry
// (store.StreamTimeHeader), so a promoted standby closes windows where
// the task's last owner did.

// windowTail is one windowed store of a standby task.
type windowTail struct {
	topic string
	ws    *store.WindowedStore
	w     *store.Restorer
	// start is where the tail began; last the offset of the last record
	// applied (the checkpoint before any), cp the checkpoint written.
	start, last, cp int64
	streamTime      int64
}

// windowTails opens the windowed stores of a standby's store partition,
// each from its checkpoint. A checkpoint that does not match its
// changelog wipes the whole partition (wiped), as the counts' does, and
// every store starts from its changelog's start; so does a store whose
// counts have no checkpoint (noCounts), the partition being empty.
func (l *loop) windowTails(insp *kafka.Consumer, st *store.Partition, noCounts bool) (tails []*windowTail, wiped bool, err error) {
	cfg := l.r.cfg
	type bounds struct{ low, high, cp int64 }
	var bs []bounds
	for _, spec := range cfg.Windows {
		topic := cfg.WindowChangelogTopic(spec.Store)
		ws, err := st.Windowed(spec.Store)
		if err != nil {
			return nil, false, err
		}
		low, high, err := insp.QueryWatermarkOffsets(topic, st.ID(), 5000)
		if err == nil && cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
			high, err = restore.LogEnd(l.ctx, insp, topic, st.ID())
		}
		if err != nil {
			return nil, false, fmt.Errorf("query changelog watermarks of %s: %w", topic, err)
		}
		cp, err := ws.Checkpoint()
		if err != nil {
			return nil, false, err
		}
		if cp != store.NoCheckpoint && (cp >= high || cp+1 < low) && !wiped {
			l.r.log.Warn("standby's windowed store does not match its changelog: wiping the task and starting from the start",
				"task", st.ID(), "windowed_store", spec.Store, "checkpoint", cp, "changelog_low", low, "changelog_high", high)
			if err := st.Wipe(); err != nil {
				return nil, false, fmt.Errorf("wipe standby store: %w", err)
			}
			cfg.Metrics.Wipes.WithLabelValues("checkpoint outside changelog").Inc()
			wiped = true
		}
		bs = append(bs, bounds{low, high, cp})
		tails = append(tails, &windowTail{topic: topic, ws: ws, streamTime: store.NoStreamTime})
	}
	for i, wt := range tails {
		cp := bs[i].cp
		if wiped || noCounts {
			cp = store.NoCheckpoint
		}
		if cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
			wt.w = wt.ws.NewRestorer()
		} else if wt.w, err = wt.ws.NewRestorerKeepingMax(); err != nil {
			for _, done := range tails[:i] {
				done.w.Cancel()
			}
			return nil, false, err
		}
		wt.start, wt.last, wt.cp = max(cp+1, bs[i].low), cp, cp
	}
	return tails, wiped, nil
}

// assigned are the changelog partitions the standby tails.
func (t *tail) assigned(topic string) []kafka.TopicPartition {
	out := []kafka.TopicPartition{{Topic: &topic, Partition: t.p}}
	for _, wt := range t.windowed {
		out = append(out, kafka.TopicPartition{Topic: &wt.topic, Partition: t.p})
	}
	return out
}

// applyWindowed writes one record of a windowed store's changelog.
func (l *loop) applyWindowed(t *tail, e *kafka.Message) error {
	for _, wt := range t.windowed {
		if wt.topic != *e.TopicPartition.Topic {
			continue
		}
		if int64(e.TopicPartition.Offset) <= wt.last {
			return nil // fetched again
		}
		var err error
		if e.Value == nil {
			err = wt.w.Delete(e.Key)
		} else if _, derr := store.DecodeCount(e.Value); derr != nil {
			l.r.log.Warn("skipping undecodable changelog record", "task", t.p, "topic", wt.topic, "offset", int64(e.TopicPartition.Offset), "error", derr)
		} else {
			err = wt.w.Put(e.Key, e.Value)
		}
		if err != nil {
			return err
		}
		for _, h := range e.Headers {
			if h.Key == store.StreamTimeHeader {
				if st, perr := strconv.ParseInt(string(h.Value), 10, 64); perr == nil {
					wt.streamTime = max(wt.streamTime, st)
				}
			}
		}
		wt.last = int64(e.TopicPartition.Offset)
		if wt.w.Full() {
			return l.checkpointWindowed(t)
		}
		return nil
	}
	return nil
}

// checkpointWindowed writes what the standby's windowed stores applied,
// their checkpoints and stream times.
func (l *loop) checkpointWindowed(t *tail) error {
	for _, wt := range t.windowed {
		if wt.last == wt.cp {
			continue
		}
		if err := wt.w.Checkpoint(wt.last); err != nil {
			return err
		}
		if err := wt.ws.RaiseStreamTime(wt.streamTime); err != nil {
			return err
		}
		wt.cp = wt.last
	}
	return nil
}

// dropWindowed flushes and closes the standby's windowed stores' writers;
// their checkpoints were written with the counts' (checkpoint).
func (l *loop) dropWindowed(t *tail) {
	for _, wt := range t.windowed {
		if wt.last == wt.cp {
			if err := wt.w.Flush(); err != nil {
				l.r.log.Warn("flush standby windowed store", "task", t.p, "topic", wt.topic, "error", err)
			}
		}
		wt.w.Cancel()
	}
}
