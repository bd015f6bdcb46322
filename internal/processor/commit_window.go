package processor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/window"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The committer's part of windowed stores (docs/windows.md, "Topics"):
// each store's writes go to its own changelog, keyed by window key, and
// its counts to its own output topic, keyed by the input key; the store's
// windows, checkpoint and stream time commit with the task's counts.

// sendWindowed produces the windowed stores' changelog and output records
// of a batch.
func (c *committer) sendWindowed(tasks []taskBatch) error {
	m := &kafka.Message{}
	for _, tb := range tasks {
		for _, wb := range tb.windowed {
			headers := []kafka.Header{{Key: store.StreamTimeHeader, Value: strconv.AppendInt(nil, wb.streamTime, 10)}}
			updates := wb.spec.Emit == window.EmitUpdates
			changelog, output := wb.changelog, wb.output
			send := func(topic *string, partition int32, key, value []byte, ts int64, h []kafka.Header) error {
				*m = kafka.Message{TopicPartition: kafka.TopicPartition{Topic: topic, Partition: partition}, Key: key, Value: value, Headers: h}
				if ts >= 0 {
					m.Timestamp = time.UnixMilli(ts)
				}
				return c.produce(m)
			}
			// Retractions first: a consumer of the output sees the merged
			// sessions go before the session they merged into.
			for k := range wb.writes.deleted {
				if err := send(&changelog, tb.partition, store.EncodeWindowKey(k.window()), nil, -1, headers); err != nil {
					return err
				}
				if updates {
					if err := send(&output, kafka.PartitionAny, []byte(k.key), windowJSON(k, nil), k.end, nil); err != nil {
						return err
					}
				}
			}
			for k, n := range wb.writes.counts {
				if err := send(&changelog, tb.partition, store.EncodeWindowKey(k.window()), store.EncodeCount(n), -1, headers); err != nil {
					return err
				}
				if updates {
					if err := send(&output, kafka.PartitionAny, []byte(k.key), windowJSON(k, &n), k.end, nil); err != nil {
						return err
					}
				}
			}
			for k, n := range wb.finals {
				if err := send(&output, kafka.PartitionAny, []byte(k.key), windowJSON(k, &n), k.end, nil); err != nil {
					return err
				}
			}
			c.p.metrics.producedWindowChangelog.Add(float64(len(wb.writes.counts) + len(wb.writes.deleted)))
			outputs := len(wb.finals)
			if updates {
				outputs += len(wb.writes.counts) + len(wb.writes.deleted)
			}
			c.p.metrics.producedWindowOutput.Add(float64(outputs))
		}
	}
	return nil
}

// windowRecord is the value of a windowed store's output record. Value
// is null in a retraction: the session it names was merged into another
// and is gone.
type windowRecord struct {
	Key   string `json:"key"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Value *int64 `json:"value"`
}

func windowJSON(k winKey, n *int64) []byte {
	b, _ := json.Marshal(windowRecord{Key: k.key, Start: k.start, End: k.end, Value: n})
	return b
}

// windowedStoreBatches are a task's windowed writes as the store takes
// them, each store's checkpoint being the last offset delivered to its
// changelog partition. A store with no writes in the batch keeps its
// checkpoint and stream time.
func (c *committer) windowedStoreBatches(tb taskBatch) (map[string]store.WindowedBatch, error) {
	out := make(map[string]store.WindowedBatch, len(tb.windowed))
	for _, wb := range tb.windowed {
		if wb.writes.empty() {
			continue
		}
		cp, ok := c.delivered.LastOffset(wb.changelog, tb.partition)
		if !ok {
			return nil, fmt.Errorf("task %d has windows to commit in store %s but no delivery to %s", tb.partition, wb.spec.Store, wb.changelog)
		}
		puts := make(map[string]int64, len(wb.writes.counts))
		for k, n := range wb.writes.counts {
			puts[string(store.EncodeWindowKey(k.window()))] = n
		}
		deletes := make([]string, 0, len(wb.writes.deleted))
		for k := range wb.writes.deleted {
			deletes = append(deletes, string(store.EncodeWindowKey(k.window())))
		}
		out[wb.spec.Store] = store.WindowedBatch{Puts: puts, Deletes: deletes, Checkpoint: cp, StreamTime: wb.streamTime}
	}
	return out, nil
}

// expireWindows deletes from the task's windowed stores the windows the
// batch's stream time expired (window.Spec.Expired).
func (c *committer) expireWindows(sp *store.Partition, tb taskBatch) error {
	for _, wb := range tb.windowed {
		if wb.streamTime < 0 {
			continue
		}
		ws, err := sp.Windowed(wb.spec.Store)
		if err != nil {
			return err
		}
		n, err := ws.ExpireWindows(wb.streamTime - wb.spec.Retention.Milliseconds())
		if err != nil {
			return err
		}
		c.p.metrics.windowsExpired.WithLabelValues(wb.spec.Store).Add(float64(n))
	}
	return nil
}

// publishWindows hands a stored batch's windows to OnWindowCommit, store by
// store, each with the offset its changelog partition reached.
func (c *committer) publishWindows(tasks []taskBatch) {
	if c.p.cfg.OnWindowCommit == nil {
		return
	}
	byStore := map[string][]abacus.WindowUpdate{}
	for _, tb := range tasks {
		for _, wb := range tb.windowed {
			cp, ok := c.delivered.LastOffset(wb.changelog, tb.partition)
			if !ok {
				continue
			}
			ups := byStore[wb.spec.Store]
			for k := range wb.writes.deleted {
				ups = append(ups, abacus.WindowUpdate{Key: k.key, Start: k.start, End: k.end, Deleted: true, Partition: tb.partition, Offset: cp})
			}
			for k, n := range wb.writes.counts {
				ups = append(ups, abacus.WindowUpdate{Key: k.key, Start: k.start, End: k.end, Value: n, Partition: tb.partition, Offset: cp})
			}
			byStore[wb.spec.Store] = ups
		}
	}
	for _, w := range c.p.windowed {
		if ups := byStore[w.spec.Store]; len(ups) > 0 {
			c.p.cfg.OnWindowCommit(w.spec.Store, ups)
		}
	}
}
