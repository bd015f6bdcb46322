// Package processor is abacus's counting pipeline: it consumes the input
// topic in a consumer group, counts records per key in one task per input
// partition, writes every new count to the changelog and the output topic,
// and commits state and offsets together by the state protocol of DESIGN.md.
//
// Ownership. One goroutine, the session loop, owns the consumer, the
// producer and every task: it processes records, runs the rebalance
// callback and commits. The poller calls Poll for it on a goroutine of its
// own and hands over records and the rebalance callback (librdkafka calls
// it from inside Poll) in order, so the client's cost per record overlaps
// the counting; records polled before a seek are dropped by generation
// (poller.go). The committer runs one batch at a time; a task's restorer
// writes to that task's store partition alone until it reports back to the
// loop; the delivery tracker reads the producer's delivery reports. HTTP handlers read
// committed values straight from the store and the task table through an
// atomically swapped snapshot; they never touch the loop's state.
//
// Commit. At every commit interval, when the record cache is full, before a
// revocation and at shutdown the loop commits: under at_least_once it waits
// for each task's changelog and output deliveries and writes that task's
// dirty values with its new checkpoint to Badger (while later tasks' are
// still on their way), then commits the input offsets once all are; under
// exactly_once_v2 the changelog and output records and the input offsets
// go in one Kafka transaction and Badger is written only after it commits.
// Badger thus only ever holds committed state and the changelog offset it
// reflects, so a restart restores only the changelog past the checkpoint.
//
// Rebalances. A cooperative rebalance is routine: the member keeps
// counting the partitions it keeps, commits the partitions it gives up in
// the revocation (rebalance.go commitRevoked), and never ends its session
// for it. An offset commit the group refuses while it rebalances
// (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS) leaves its batch stored and
// its offsets owed by the tasks, committed again in the new generation
// (at_least_once); under exactly_once_v2 the transaction aborts and its
// records are redone in place (e2e TestRoutineRebalancesCountExactlyAtLeastOnce,
// TestRollingRestart).
//
// Sessions. Errors the loop cannot recover from in place (a fenced
// producer, a broker gone past the delivery timeout) end the session: its
// uncommitted work is dropped, the clients are closed, and a new session
// starts after a backoff, restoring each task's small delta from its
// checkpoint. Nothing committed is lost and nothing uncommitted is kept.
package processor
