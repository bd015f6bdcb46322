package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// A member whose assignment is lost while its transaction is open must not
// commit that transaction: the partition may have a new owner already, and
// once librdkafka has reset the member's id and generation the offsets go
// to the broker with generation -1, which it accepts without fencing. A
// zombie commit then puts a stale count after the new owner's and moves
// the group's offsets under it: counts lost or counted twice, for good.
//
// The broker holds the member's changelog records of one commit while the
// group tells it (by its heartbeats) that it is no longer a member; a
// stand-in for the next owner then counts the same input and one more
// record and commits; then the held records go through, the member's
// transaction ends, and the next owner commits once more. The member must
// abort, so the next owner's counts stand: k = 9 and j = 1. Had it
// committed, its k = 8 would be the changelog's last value for k under
// the next owner's offsets: one count lost for good.
func TestLostMemberDoesNotCommitItsOpenTransactionExactlyOnce(t *testing.T) {
	b, in := soleMemberCountingK(t, "exactly_once_v2")

	// Hold the member's next changelog records at the broker.
	c := b.Cluster()
	held, release := make(chan struct{}), make(chan struct{})
	var holdOnce sync.Once
	memberTxn := "counts-app-abacus-0"
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if pr.TransactionID == nil || *pr.TransactionID != memberTxn {
			return nil, nil, false
		}
		for _, tp := range pr.Topics {
			if tp.Topic != changelog {
				continue
			}
			holdOnce.Do(func() {
				close(held)
				c.SleepControl(func() { <-release })
			})
		}
		return nil, nil, false
	})
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 3)) // offsets 5-7: the member counts k = 8
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the member sent no changelog records for the three new records in 30 s")
	}

	// The group drops the member: every heartbeat answers UNKNOWN_MEMBER_ID.
	var dropping atomic.Bool
	dropping.Store(true)
	c.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !dropping.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil, true
	})
	testkit.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(in.Log(), "partitions lost") {
			return fmt.Errorf("the member has not noticed it lost its partitions")
		}
		return nil
	})
	dropping.Store(false)

	// The next owner counts the same three records and two more (k at 8, j
	// at 9), in three transactions, as a member would.
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 1))
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("j", 1))
	next, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "transactional.id": "next-owner",
		"log_level": 3, "enable.metrics.push": false})
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer next.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := next.InitTransactions(ctx); err != nil {
		close(release)
		t.Fatal(err)
	}
	group, err := kafka.NewTestConsumerGroupMetadata("counts-app")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	commit := func(key, count string, offset int64) {
		t.Helper()
		topic, in := changelog, input
		if err := next.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		done := make(chan kafka.Event, 1)
		if err := next.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: []byte(key), Value: []byte(count)}, done); err != nil {
			t.Fatal(err)
		}
		if err := (<-done).(*kafka.Message).TopicPartition.Error; err != nil {
			t.Fatalf("next owner: deliver %s=%s: %v", key, count, err)
		}
		if err := next.SendOffsetsToTransaction(ctx, []kafka.TopicPartition{{Topic: &in, Partition: 0, Offset: kafka.Offset(offset)}}, group); err != nil {
			t.Fatalf("next owner: send offset %d: %v", offset, err)
		}
		if err := next.CommitTransaction(ctx); err != nil {
			t.Fatalf("next owner: commit %s=%s: %v", key, count, err)
		}
	}
	// See how the member's transaction ends.
	ended := make(chan bool, 1)
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if et := req.(*kmsg.EndTxnRequest); et.TransactionalID == memberTxn {
			select {
			case ended <- et.Commit:
			default:
			}
			return nil, nil, false
		}
		c.KeepControl()
		return nil, nil, false
	})
	func() {
		defer close(release) // whatever happens, let the member's records go
		commit("k", "8", 8)
		commit("k", "9", 9)
	}()
	select {
	case committed := <-ended:
		if committed {
			t.Errorf("the member committed the transaction it had open when it lost its partitions")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the member's transaction did not end within 30 s of its records going through")
	}
	commit("j", "1", 10)

	want := map[string]int64{"k": 9, "j": 1}
	waitCounts(t, time.Minute, []*testkit.Instance{in}, want, false)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("j", 1))
	want["j"] = 2
	waitCounts(t, time.Minute, []*testkit.Instance{in}, want, false)
	last, _ := testkit.LastValues(t, b.Addr(), changelog, "read_committed")
	if last["k"] != "9" || last["j"] != "2" {
		t.Errorf("changelog (read_committed) last values k=%q j=%q, want 9 and 2", last["k"], last["j"])
	}
}

// Under at-least-once a member's store checkpoint is the offset of its own
// last changelog record. If another writer's record lands among the
// member's own (a next owner's count while the member, cut off from the
// broker, was expelled without knowing it; a previous owner's late send),
// a checkpoint at the member's last record claims a record the store never
// saw: the next restore from that checkpoint skips it for good, and the
// other writer's higher count is lost: keys left below the truth for good
// after a broker cut. The member must not store past it: it ends the
// session and restores from its checkpoint, the other record included.
//
// The broker holds the member's changelog records of one commit while a
// stand-in for another owner writes a higher count of the same key; then
// the held records land after it. The member's answer must then be what a
// restore of the changelog from scratch gives, and never below the other
// writer's count.
func TestCheckpointNeverSkipsAnotherWritersChangelogRecordAtLeastOnce(t *testing.T) {
	b, in := soleMemberCountingK(t, "at_least_once")
	release := countThreeMoreKHeld(t, b, "")

	// Another writer's count lands first.
	other, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "acks": "all",
		"log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	topic := changelog
	done := make(chan kafka.Event, 1)
	err = other.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: []byte("k"), Value: []byte("50")}, done)
	if err == nil {
		err = (<-done).(*kafka.Message).TopicPartition.Error
	}
	release() // the member's records land after it
	if err != nil {
		t.Fatalf("another writer: deliver k=50: %v", err)
	}

	// The member restores the other writer's count (the larger) and counts
	// the three records again on top of it, as a restore from scratch
	// answers. (Waiting only for an answer of at least 50 read the member
	// between its restore and its recount: 50, against 53 from scratch.)
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"k": 53}, false)
	if n := metric(t, in, "abacus_changelog_other_writer_total"); n != 1 {
		t.Errorf("abacus_changelog_other_writer_total = %v, want 1", n)
	}
	in.Stop(30 * time.Second)
	if !strings.Contains(in.Log(), "not storing a task whose changelog another member wrote to") {
		t.Errorf("the member did not say why it restores the task")
	}
	fresh := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PARTITIONS": "1"}})
	fresh.WaitReady(time.Minute)
	waitCounts(t, time.Minute, []*testkit.Instance{fresh}, map[string]int64{"k": 53}, false)
}

// soleMemberCountingK starts a broker with a one-partition input and
// changelog and one member counting them under guarantee, and waits until
// it has counted five records of key k.
func soleMemberCountingK(t *testing.T, guarantee string) (*broker.Broker, *testkit.Instance) {
	t.Helper()
	b := testkit.StartBroker(t, 1)
	createTopic(t, b.Addr(), input, 1)
	createTopic(t, b.Addr(), changelog, 1)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": guarantee, "ABACUS_PARTITIONS": "1"}})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 5))
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"k": 5}, false)
	return b, in
}

// sameKey is n records of key.
func sameKey(key string, n int) []testkit.Record {
	out := make([]testkit.Record, n)
	for i := range out {
		out[i] = testkit.Record{Key: []byte(key), Value: []byte("v")}
	}
	return out
}

// A batch that fails while a revocation waits for it (its input offsets
// refused: the group moved on) takes everything counted after it along:
// the tasks' buffers count on top of the failed batch, so a later commit
// would carry its counts for the keys counted again since, and commit
// input offsets past the keys counted only in it, which would then be
// lost for good. So the aborted transaction drops the work counted after
// it too and rewinds the consumer to the batch's first record, and a
// failing session hands off no further batch.
//
// The broker holds the member's input offsets of one transaction while
// the member counts more (some keys again, some new) and a second member
// joins; once the member is committing before its revocation, the broker
// refuses the offsets with ILLEGAL_GENERATION. The member aborts and
// drops the batch and everything counted after it, without ending its
// session. Every key must then end exact, the ones counted only in the
// failed batch included.
func TestFailedCommitBeforeRevocationCommitsNothingAfterItExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 1)
	createTopic(t, b.Addr(), input, 2)
	createTopic(t, b.Addr(), changelog, 2)
	port := testkit.FreePort(t)
	env := steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_PARTITIONS": "2",
		"ABACUS_LOG_LEVEL": "debug", "ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("http://127.0.0.{{add .Ordinal 1}}:%d", port)})
	member := func(i int) *testkit.Instance {
		return testkit.StartInstance(t, testkit.InstanceConfig{Name: fmt.Sprintf("abacus-%d", i), Brokers: b.Addr(),
			Host: fmt.Sprintf("127.0.0.%d", i+1), Port: port, Env: env})
	}
	first := member(0)
	first.WaitReady(time.Minute)
	truth := map[string]int64{}
	produced := 0
	produce := func(prefixes ...string) {
		t.Helper()
		var recs []testkit.Record
		for _, prefix := range prefixes {
			for i := range 20 {
				k := fmt.Sprintf("%s-%d", prefix, i)
				recs = append(recs, testkit.Record{Key: []byte(k), Value: []byte("v")})
				truth[k]++
			}
		}
		produced += len(recs)
		testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
	}
	produce("before")
	waitCounts(t, time.Minute, []*testkit.Instance{first}, truth, false)

	// Hold the offsets of the member's next transaction, and refuse them
	// with ILLEGAL_GENERATION once released.
	c := b.Cluster()
	held, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo()
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		close(held)
		c.SleepControl(func() { <-release })
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range req.(*kmsg.TxnOffsetCommitRequest).Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.IllegalGeneration.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	produce("again", "only") // the batch whose offsets are held
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the member committed no offsets within 30 s")
	}
	// Counted on top of the held batch: "again" once more, and new keys.
	produce("again", "later")
	testkit.Eventually(t, time.Minute, func() error {
		return atLeastMetric(first, "abacus_records_processed_total", float64(produced))
	})
	second := member(1)
	testkit.Eventually(t, time.Minute, func() error {
		if !strings.Contains(first.Log(), "committing before revocation") {
			return fmt.Errorf("%s is not committing before a revocation yet", first.Name)
		}
		return nil
	})
	letGo()

	waitCounts(t, 2*time.Minute, []*testkit.Instance{first, second}, truth, false)
	// The refusal is a rebalance's: the transaction aborts, its work and
	// the work counted after it are dropped, and the session goes on.
	log := first.Log()
	if !strings.Contains(log, "transaction aborted: the group refused its offsets while rebalancing") {
		t.Errorf("no aborted transaction in the member's log")
	}
	if strings.Contains(log, "session failed; restarting") {
		t.Errorf("the member's session failed on a refusal of a rebalance")
	}
}

// Under exactly_once_v2 the broker fences a previous owner by the group's
// generation; should that fail (a broker's bug, a member that never
// learned it was replaced), two members' transactions would both commit
// records to one changelog partition, and counts would be lost or counted
// twice. So a member commits a transaction only
// if its changelog records follow its own since its restore, the markers
// of its transactions between them, and aborts otherwise: the session
// ends and restores the other writer's records.
//
// The broker holds the member's changelog records of one transaction
// while another transactional writer commits k = 50; then the member's
// records land after it. The member must not commit that transaction,
// and must end with what a restore from scratch answers.
func TestNoCommitOverAnotherWritersChangelogRecordExactlyOnce(t *testing.T) {
	b, in := soleMemberCountingK(t, "exactly_once_v2")
	memberTxn := "counts-app-abacus-0"
	release := countThreeMoreKHeld(t, b, memberTxn)
	// How the transaction of the held records ends: the member's first
	// EndTxn from now on (it cannot end while its records are held).
	c := b.Cluster()
	ended := make(chan bool, 1)
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if et := req.(*kmsg.EndTxnRequest); et.TransactionalID == memberTxn {
			select {
			case ended <- et.Commit:
			default:
			}
		}
		return nil, nil, false
	})

	// Another writer commits its count first.
	other, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "transactional.id": "other-writer",
		"log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := other.InitTransactions(ctx); err != nil {
			return err
		}
		if err := other.BeginTransaction(); err != nil {
			return err
		}
		topic, done := changelog, make(chan kafka.Event, 1)
		if err := other.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: []byte("k"), Value: []byte("50")}, done); err != nil {
			return err
		}
		if err := (<-done).(*kafka.Message).TopicPartition.Error; err != nil {
			return err
		}
		return other.CommitTransaction(ctx)
	}()
	release() // the member's records land after it
	if err != nil {
		t.Fatalf("another writer: commit k=50: %v", err)
	}

	select {
	case committed := <-ended:
		if committed {
			t.Errorf("the member committed its transaction over the other writer's record")
		}
	case <-time.After(time.Minute):
		t.Fatal("the member's transaction did not end within a minute of its records going through")
	}
	if !strings.Contains(in.Log(), "not committing a task whose changelog another member wrote to") {
		t.Errorf("the member did not say why it restores the task")
	}
	if n := metric(t, in, "abacus_changelog_other_writer_total"); n != 1 {
		t.Errorf("abacus_changelog_other_writer_total = %v, want 1", n)
	}
	// The member restores the other writer's count and counts the three
	// records again on top of it.
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"k": 53}, false)
	in.Stop(30 * time.Second)
	fresh := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_PARTITIONS": "1"}})
	fresh.WaitReady(time.Minute)
	waitCounts(t, time.Minute, []*testkit.Instance{fresh}, map[string]int64{"k": 53}, false)
}

// countThreeMoreKHeld has the member count three more records of k while
// the broker holds its next changelog records (those of transactional id
// txn, or of any producer if txn is empty). It returns once they are
// held, with the function that lets them through (safe to call more than
// once; the test's end calls it too).
func countThreeMoreKHeld(t *testing.T, b *broker.Broker, txn string) (release func()) {
	t.Helper()
	c := b.Cluster()
	held, let := make(chan struct{}), make(chan struct{})
	var holdOnce, releaseOnce sync.Once
	release = func() { releaseOnce.Do(func() { close(let) }) }
	t.Cleanup(release)
	var armed atomic.Bool
	armed.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if !armed.Load() || (txn != "" && (pr.TransactionID == nil || *pr.TransactionID != txn)) {
			return nil, nil, false
		}
		for _, tp := range pr.Topics {
			if tp.Topic == changelog {
				armed.Store(false)
				holdOnce.Do(func() {
					close(held)
					c.SleepControl(func() { <-let })
				})
			}
		}
		return nil, nil, false
	})
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 3)) // the member counts k = 8
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the member sent no changelog records for the three new records in 30 s")
	}
	return release
}

// A member killed after its transaction registered a changelog partition
// but before its records went out leaves no record there, only a marker
// once the transaction is aborted (by its next life or by the transaction
// timeout), written wherever the log has come to: among the records of
// the partition's next owner (Kafka, like kfake, writes a transaction's
// markers to every partition it registered, data or not). A marker is no
// one's count, so the owner must go on committing, not take it for
// another writer and restart its session.
func TestAnotherProducersMarkerAloneIsNoOtherWriterExactlyOnce(t *testing.T) {
	b, in := soleMemberCountingK(t, "exactly_once_v2")
	abort := killedMembersTransaction(t, b.Addr())
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 3))
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"k": 8}, false)
	abort() // its marker lands after the member's records
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sameKey("k", 3))
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"k": 11}, false)
	if n := metric(t, in, "abacus_changelog_other_writer_total"); n != 0 {
		t.Errorf("abacus_changelog_other_writer_total = %v, want 0", n)
	}
	if n := metric(t, in, "abacus_session_restarts_total"); n != 0 {
		t.Errorf("abacus_session_restarts_total = %v, want 0", n)
	}
	in.Stop(30 * time.Second)
	if !strings.Contains(in.Log(), "another producer's transaction markers lie among the task's changelog records, but none of its records") {
		t.Errorf("the member did not say it committed over another producer's marker")
	}
	fresh := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_PARTITIONS": "1"}})
	fresh.WaitReady(time.Minute)
	waitCounts(t, time.Minute, []*testkit.Instance{fresh}, map[string]int64{"k": 11}, false)
}

// killedMembersTransaction opens a transaction that registers changelog
// partition 0 and writes nothing to it, as a member killed right after
// registering it leaves one; abort ends it as the member's next life does.
func killedMembersTransaction(t *testing.T, brokers string) (abort func()) {
	t.Helper()
	// AddPartitionsToTxn v4 and later are for brokers; a producer sends v3.
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(int16(kmsg.AddPartitionsToTxn), 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.MaxVersions(versions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txn := "counts-app-abacus-9"
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID = &txn
	init.TransactionTimeoutMillis = 60000
	ir, err := init.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(ir.ErrorCode)
	}
	if err != nil {
		t.Fatalf("init producer id: %v", err)
	}
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch = txn, ir.ProducerID, ir.ProducerEpoch
	at := kmsg.NewAddPartitionsToTxnRequestTopic()
	at.Topic, at.Partitions = changelog, []int32{0}
	add.Topics = append(add.Topics, at)
	ar, err := add.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(ar.Topics[0].Partitions[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("add changelog partition 0 to the transaction: %v", err)
	}
	return func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		end := kmsg.NewPtrEndTxnRequest()
		end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = txn, ir.ProducerID, ir.ProducerEpoch, false
		er, err := end.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(er.ErrorCode)
		}
		if err != nil {
			t.Fatalf("abort the transaction: %v", err)
		}
	}
}
