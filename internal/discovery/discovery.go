package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// View is one snapshot of the group's ownership.
type View struct {
	Members []abacus.Member
	// Owner maps a partition to the index of its member in Members.
	Owner      map[int32]int
	Partitions int32
	// Standbys maps a partition to the indices in Members of the members
	// that keep its standby copies, by the placement every member
	// computes from the same description (placeStandbys); empty without
	// ABACUS_NUM_STANDBY_REPLICAS.
	Standbys [][]int
	// Stable says the group was not rebalancing when it was described.
	Stable    bool
	Refreshed time.Time
}

// OwnerOf returns the member owning partition p, if the view knows one.
func (v *View) OwnerOf(p int32) (abacus.Member, bool) {
	i, ok := v.Owner[p]
	if !ok {
		return abacus.Member{}, false
	}
	return v.Members[i], true
}

// Config wires a Discovery.
type Config struct {
	config.Config
	// Refresh is how often the view is refreshed with no other reason.
	Refresh time.Duration
	Logger  *slog.Logger
	// OnOrphaned, if set, is called on the refresh goroutine when this
	// member should make the group rebalance, because the partitions
	// given have had no owner in a Stable group for OrphanGrace or longer
	// (see orphanWatch). It must not block.
	OnOrphaned func(partitions []int32)
	// OnView, if set, is called on the refresh goroutine with every view a
	// refresh reads from the group (not with a pinned one), once View
	// returns it. It must not block, nor change the view, which other
	// readers share. A rebalancing group's view (Stable false) lists no
	// assignments, since Kafka describes a group's assignments only while
	// it is Stable: its standby placement treats every partition as
	// unowned, and differs from the Stable views before and after it.
	OnView func(v *View)
	// OrphanGrace defaults to 15 s: far longer than the gap between the
	// two phases of a cooperative rebalance, even with a slow revocation.
	OrphanGrace time.Duration
}

// orphanRefresh is how often the view is refreshed while partitions have
// no owner in a Stable group, so that the episode is timed closely.
const orphanRefresh = 2 * time.Second

// Discovery keeps the ownership view.
type Discovery struct {
	cfg     Config
	log     *slog.Logger
	part    partitioner.Func
	tpl     *template.Template
	view    atomic.Pointer[View]
	trigger chan struct{}
	// describe reads the group; a seam so tests can drive a stale view.
	describe func(ctx context.Context) (*View, error)
	admin    *kafkaconf.AdminClient
	mu       sync.Mutex
	static   *View       // pinned view (tests), never refreshed
	orphans  orphanWatch // the refresh goroutine's alone
}

// New builds a Discovery; it has no side effects.
func New(cfg Config) (*Discovery, error) {
	part, err := partitioner.Named(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	tpl, err := config.ParsePeerTemplate(cfg.PeerURLTemplate)
	if err != nil {
		return nil, fmt.Errorf("peer URL template: %w", err)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Discovery{cfg: cfg, log: cfg.Logger.With("component", "discovery"), part: part, tpl: tpl, trigger: make(chan struct{}, 1),
		orphans: orphanWatch{grace: cfg.OrphanGrace}}
	d.describe = d.describeGroup
	d.view.Store(&View{Owner: map[int32]int{}})
	return d, nil
}

// Run refreshes the view until ctx ends.
func (d *Discovery) Run(ctx context.Context) error {
	admin, err := kafkaconf.NewAdmin(kafkaconf.Admin(d.cfg.Config), d.log, kafkaconf.RoleAdmin)
	if err != nil {
		return fmt.Errorf("create admin client for discovery: %w", err)
	}
	d.admin = admin
	defer admin.Close()
	next := time.NewTimer(d.cfg.Refresh)
	defer next.Stop()
	const minGap = 250 * time.Millisecond
	var last time.Time
	for {
		if wait := minGap - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		last = time.Now()
		wait := d.cfg.Refresh
		if d.refresh(ctx) {
			wait = min(wait, orphanRefresh)
		}
		next.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-next.C:
		case <-d.trigger:
		}
	}
}

// refresh reads the group's description into the view, and says whether
// the group is Stable with partitions that no member owns.
func (d *Discovery) refresh(ctx context.Context) (orphaned bool) {
	if d.pinned() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := d.describe(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Debug("refresh ownership view", "error", err)
		}
		return false
	}
	v.setStandbys(d.cfg.NumStandbyReplicas)
	d.view.Store(v)
	if d.cfg.OnView != nil {
		d.cfg.OnView(v)
	}
	if ps, act := d.orphans.observe(v, d.cfg.InstanceID, time.Now()); act {
		d.log.Warn("input partitions have no owner in a stable group: making the group rebalance",
			"partitions", ps, "for_at_least", d.cfg.OrphanGrace)
		if d.cfg.OnOrphaned != nil {
			d.cfg.OnOrphaned(ps)
		}
	}
	return v.Stable && len(v.Unowned()) > 0
}

// Trigger asks for a refresh soon; it never blocks and calls coalesce.
func (d *Discovery) Trigger() {
	select {
	case d.trigger <- struct{}{}:
	default:
	}
}

// View is the last complete view.
func (d *Discovery) View() *View { return d.view.Load() }

// PartitionOf is a key's partition, or an error before the partition
// count is known.
func (d *Discovery) PartitionOf(key []byte) (int32, error) {
	n := d.view.Load().Partitions
	if n <= 0 {
		return 0, errors.New("partition count not known yet")
	}
	return d.part(key, n), nil
}

// Pin replaces the view and stops refreshing it: for tests that need a
// deliberately stale view.
func (d *Discovery) Pin(v *View) {
	d.mu.Lock()
	d.static = v
	d.mu.Unlock()
	d.view.Store(v)
}

func (d *Discovery) pinned() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.static != nil
}

func (d *Discovery) describeGroup(ctx context.Context) (*View, error) {
	topic := d.cfg.InputTopic
	md, err := d.admin.GetMetadata(&topic, false, 5000)
	if err != nil {
		return nil, fmt.Errorf("read input topic metadata: %w", err)
	}
	n := int32(len(md.Topics[topic].Partitions))
	res, err := d.admin.DescribeConsumerGroups(ctx, []string{d.cfg.ApplicationID})
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", d.cfg.ApplicationID, err)
	}
	if len(res.ConsumerGroupDescriptions) != 1 {
		return nil, fmt.Errorf("describe group %s: no description", d.cfg.ApplicationID)
	}
	g := res.ConsumerGroupDescriptions[0]
	if g.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("describe group %s: %w", d.cfg.ApplicationID, g.Error)
	}
	v := &View{Owner: map[int32]int{}, Partitions: n, Refreshed: time.Now(), Stable: g.State == kafka.ConsumerGroupStateStable}
	for _, m := range g.Members {
		name := m.GroupInstanceID
		if name == "" {
			name = m.ClientID
		}
		url, err := d.URLOf(name)
		if err != nil {
			return nil, err
		}
		mem := abacus.Member{Name: name, URL: url, Partitions: []int32{}, Standbys: []int32{}}
		for _, tp := range m.Assignment.TopicPartitions {
			if tp.Topic != nil && *tp.Topic == topic {
				mem.Partitions = append(mem.Partitions, tp.Partition)
			}
		}
		sort.Slice(mem.Partitions, func(i, j int) bool { return mem.Partitions[i] < mem.Partitions[j] })
		v.Members = append(v.Members, mem)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	for i, m := range v.Members {
		for _, p := range m.Partitions {
			v.Owner[p] = i
		}
	}
	return v, nil
}

var trailingNumber = regexp.MustCompile(`(\d+)$`)

// URLOf is a member's URL by the peer URL template.
func (d *Discovery) URLOf(member string) (string, error) {
	ordinal := 0
	if m := trailingNumber.FindString(member); m != "" {
		ordinal, _ = strconv.Atoi(m)
	}
	var sb strings.Builder
	err := d.tpl.Execute(&sb, config.PeerTemplateData{
		Member: member, Ordinal: ordinal, Namespace: d.cfg.Namespace, Service: d.cfg.Service, Port: d.cfg.HTTPPort(),
	})
	if err != nil {
		return "", fmt.Errorf("peer URL of %s: %w", member, err)
	}
	return strings.TrimRight(sb.String(), "/"), nil
}
