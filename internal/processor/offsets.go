package processor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// inspector is a consumer that never joins the group, for answering
// questions about offsets from outside the session loop.
type inspector struct {
	mu sync.Mutex
	c  *kafka.Consumer
}

func (p *Processor) inspectorClient() (*kafka.Consumer, error) {
	p.insp.mu.Lock()
	defer p.insp.mu.Unlock()
	if p.insp.c != nil {
		return p.insp.c, nil
	}
	conf := kafkaconf.Restore(p.cfg.Config)
	(*conf)["group.id"] = p.cfg.ApplicationID // to read the group's committed offsets
	(*conf)["client.id"] = p.cfg.ApplicationID + "-" + p.cfg.InstanceID + "-inspector"
	c, err := kafkaconf.NewConsumer(conf, p.log, kafkaconf.RoleInspector)
	if err != nil {
		return nil, fmt.Errorf("create inspector consumer: %w", err)
	}
	p.insp.c = c
	return c, nil
}

// restoreConfig is what every task's restore shares.
func (p *Processor) restoreConfig() restore.Config {
	return restore.Config{
		Config:    p.cfg.Config,
		Inspector: p.inspectorClient,
		Logger:    p.log,
		Seed:      p.cfg.Seed,
		Acquire:   p.releaseStandby,
		Metrics:   restore.Metrics{Restored: p.metrics.restored, RestoredBytes: p.metrics.restoredBytes, Remaining: p.metrics.restoreRemaining, Wipes: p.metrics.wipes},
	}
}

func (p *Processor) closeInspector() {
	p.insp.mu.Lock()
	defer p.insp.mu.Unlock()
	if p.insp.c != nil {
		p.insp.c.Close()
		p.insp.c = nil
	}
}

// Offsets reports every input partition and this instance's store
// partitions. It asks the broker, within ctx.
func (p *Processor) Offsets(ctx context.Context) ([]abacus.PartitionOffsets, error) {
	n := p.NumPartitions()
	if n == 0 {
		return nil, abacus.ErrRestoring
	}
	c, err := p.inspectorClient()
	if err != nil {
		return nil, err
	}
	timeout := 5000
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(100, int(time.Until(dl).Milliseconds()))
	}
	input, changelog := p.cfg.InputTopic, p.cfg.ChangelogTopic()
	tps := make([]kafka.TopicPartition, n)
	for i := range n {
		tps[i] = kafka.TopicPartition{Topic: &input, Partition: i}
	}
	committed, err := c.Committed(tps, timeout)
	if err != nil {
		return nil, fmt.Errorf("read committed offsets: %w", err)
	}
	tasks := *p.tasks.Load()
	out := make([]abacus.PartitionOffsets, n)
	for i := range n {
		_, end, err := c.QueryWatermarkOffsets(input, i, timeout)
		if err != nil {
			return nil, fmt.Errorf("read end of %s[%d]: %w", input, i, err)
		}
		po := abacus.PartitionOffsets{Partition: i, Committed: -1, End: end}
		if off := int64(committed[i].Offset); off >= 0 {
			po.Committed = off
			po.Lag = max(end-off, 0)
		} else {
			low, _, _ := c.QueryWatermarkOffsets(input, i, timeout)
			po.Lag = max(end-low, 0)
		}
		if t, ok := tasks[i]; ok {
			_, clEnd, err := c.QueryWatermarkOffsets(changelog, i, timeout)
			if err != nil {
				return nil, fmt.Errorf("read end of %s[%d]: %w", changelog, i, err)
			}
			cp := t.checkpoint.Load()
			lag := max(t.restoreTotal.Load()-t.restoreDone.Load(), 0)
			if t.active.Load() {
				lag = 0
			}
			po.Local, po.Checkpoint, po.ChangelogEnd, po.RestoreLag = true, &cp, &clEnd, &lag
		}
		out[i] = po
	}
	return out, nil
}
