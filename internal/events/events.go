// Package events publishes the instance's state transitions as CloudEvents
// (JSON, structured mode) to an optional Kafka topic, as Azkarra's
// monitoring interceptor does, so a dashboard or an alert can follow every
// member's lifecycle from Kafka alone. Publishing never blocks the caller:
// events queue in a bounded buffer drained by one goroutine, and an event
// that does not fit is dropped and counted.
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// TypeStateChanged is the CloudEvents type of a state transition.
const TypeStateChanged = "io.abacus.streams.state.changed"

// Event is one CloudEvent in structured JSON mode.
type Event struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            any    `json:"data"`
}

// StateChange is the data of a TypeStateChanged event.
type StateChange struct {
	ApplicationID string `json:"application_id"`
	Instance      string `json:"instance"`
	From          string `json:"from"`
	To            string `json:"to"`
	Tasks         any    `json:"tasks"`
}

// Publisher sends events to the events topic.
type Publisher struct {
	cfg     config.Config
	log     *slog.Logger
	queue   chan Event
	dropped prometheus.Counter
	sent    prometheus.Counter
}

// New builds a publisher; Run starts it.
func New(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) *Publisher {
	p := &Publisher{cfg: cfg, log: log.With("component", "events"), queue: make(chan Event, 256),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_dropped_total", Help: "State-change events dropped because the queue was full."}),
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_sent_total", Help: "State-change events delivered to the events topic."}),
	}
	reg.MustRegister(p.dropped, p.sent)
	return p
}

// StateChanged queues a state transition; it never blocks.
func (p *Publisher) StateChanged(from, to string, tasks any) {
	ev := Event{
		SpecVersion: "1.0", ID: newID(), Type: TypeStateChanged,
		Source:  "/abacus/" + p.cfg.ApplicationID + "/" + p.cfg.InstanceID,
		Subject: p.cfg.InstanceID, Time: time.Now().UTC().Format(time.RFC3339Nano), DataContentType: "application/json",
		Data: StateChange{ApplicationID: p.cfg.ApplicationID, Instance: p.cfg.InstanceID, From: from, To: to, Tasks: tasks},
	}
	select {
	case p.queue <- ev:
	default:
		p.dropped.Inc()
	}
}

// Run sends queued events until ctx ends, then flushes what is queued.
func (p *Publisher) Run(ctx context.Context) error {
	conf := kafkaconf.Admin(p.cfg) // a plain client: no transactions, no group
	(*conf)["enable.idempotence"] = true
	(*conf)["client.id"] = p.cfg.ApplicationID + "-" + p.cfg.InstanceID + "-events"
	producer, err := kafkaconf.NewProducer(conf, p.log, kafkaconf.RoleEvents)
	if err != nil {
		return fmt.Errorf("create events producer: %w", err)
	}
	defer producer.Close()
	go func() {
		for e := range producer.Events() {
			if m, ok := e.(*kafka.Message); ok {
				if m.TopicPartition.Error != nil {
					p.log.Warn("deliver state event", "error", m.TopicPartition.Error)
				} else {
					p.sent.Inc()
				}
			}
		}
	}()
	send := func(ev Event) {
		b, err := json.Marshal(ev)
		if err != nil {
			return
		}
		topic := p.cfg.EventsTopic
		err = producer.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(p.cfg.InstanceID), Value: b,
			Headers: []kafka.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}},
		}, nil)
		if err != nil {
			p.dropped.Inc()
		}
	}
	for {
		select {
		case ev := <-p.queue:
			send(ev)
		case <-ctx.Done():
			for {
				select {
				case ev := <-p.queue:
					send(ev)
				default:
					producer.Flush(5000)
					return nil
				}
			}
		}
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
