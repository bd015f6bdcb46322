// Package processor is abacus's counting pipeline: it consumes the input
// topic in a consumer group, counts records per key in one task per input
// partition, writes every new count to the changelog and the output topic,
// and commits state and offsets together by the state protocol of DESIGN.md.
//
// Ownership. One goroutine, the session loop, owns the consumer, the
// producer and every task: it polls, processes records, runs the rebalance
// callback (librdkafka calls it from inside Poll) and commits. The only
// other goroutines are a task's restorer, which writes to that task's store
// partition alone until it reports back to the loop, and the delivery
// tracker, which reads the producer's delivery reports. HTTP handlers read
// committed values straight from the store and the task table through an
// atomically swapped snapshot; they never touch the loop's state.
//
// Commit. At every commit interval, when the record cache is full, before a
// revocation and at shutdown the loop commits: under at_least_once it waits
// for every changelog and output delivery, writes each task's dirty values
// with its new checkpoint to Badger, then commits the input offsets; under
// exactly_once_v2 the changelog and output records and the input offsets
// go in one Kafka transaction and Badger is written only after it commits.
// Badger thus only ever holds committed state and the changelog offset it
// reflects, so a restart restores only the changelog past the checkpoint.
//
// Sessions. Errors the loop cannot recover from in place (a fenced
// producer, a broker gone past the delivery timeout) end the session: its
// uncommitted work is dropped, the clients are closed, and a new session
// starts after a backoff, restoring each task's small delta from its
// checkpoint. Nothing committed is lost and nothing uncommitted is kept.
package processor
