package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/processor/delivery"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// foreignReadTimeout bounds the read that tells another producer's
// markers from its records; past it the batch is refused as before.
const foreignReadTimeout = 10 * time.Second

// foreignMarkersOnly reports whether the offsets another producer took in
// a task's changelog span (err, from foreignChangelogRecords) hold
// transaction markers only. A transaction that registered the partition
// but wrote nothing to it (a member killed between registering it and its
// records going out) gets a marker there when it is aborted, by its
// producer's next life or by the transaction timeout, wherever the log
// has come to by then: among the records of the partition's next owner.
// A marker carries no count, so the span holds no one's counts but this
// member's and the commit is safe; the markers are then counted as the
// member's own. Any doubt (another record, a failed read) is a refusal.
func (c *committer) foreignMarkersOnly(ctx context.Context, err error) bool {
	var fw *delivery.ForeignWrite
	if !errors.As(err, &fw) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, foreignReadTimeout)
	defer cancel()
	n, rerr := c.p.changelogRecordsBetween(ctx, fw.Partition, fw.Base, fw.Last)
	if rerr != nil {
		c.log.Warn("cannot tell another producer's markers from its records in the changelog", "task", fw.Partition, "error", rerr)
		return false
	}
	if n != fw.Records {
		return false
	}
	c.delivered.AcceptMarkers(fw.Partition, fw.Foreign())
	c.log.Info("another producer's transaction markers lie among the task's changelog records, but none of its records: committing",
		"task", fw.Partition, "markers", fw.Foreign(), "from", fw.Base, "to", fw.Last)
	return true
}

// changelogRecordsBetween counts the records of changelog partition p at
// offsets from to to (inclusive), whoever wrote them and however their
// transactions ended: read uncommitted, which skips transaction markers.
func (p *Processor) changelogRecordsBetween(ctx context.Context, partition int32, from, to int64) (int64, error) {
	conf := kafkaconf.Restore(p.cfg.Config)
	(*conf)["isolation.level"] = "read_uncommitted"
	c, err := kafkaconf.NewConsumer(conf, p.log.With("task", partition), kafkaconf.RoleChangelogReader)
	if err != nil {
		return 0, fmt.Errorf("create changelog reader: %w", err)
	}
	defer c.Close()
	topic := p.cfg.ChangelogTopic()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: partition, Offset: kafka.Offset(from)}}); err != nil {
		return 0, fmt.Errorf("assign changelog partition %d: %w", partition, err)
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("read changelog partition %d from %d to %d: %w", partition, from, to, err)
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			off := int64(e.TopicPartition.Offset)
			if off > to {
				return n, nil
			}
			n++
			if off == to {
				return n, nil
			}
		case kafka.PartitionEOF:
			// The log ends before to: the records read are all there are.
			return n, nil
		case kafka.Error:
			if e.IsFatal() {
				return 0, fmt.Errorf("read changelog partition %d: %w", partition, e)
			}
		}
	}
}
