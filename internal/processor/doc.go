// Package processor is abacus's counting pipeline: it consumes the input
// topic in a consumer group, counts records per key in one task per input
// partition, writes every new count to the changelog and the output topic,
// and commits state and offsets together by the state protocol that
// docs/state.md describes.
//
// # Goroutines and ownership
//
// A session is one life of the consumer and the producer (session.go).
// Each of its goroutines is a type with one owner of its state:
//
//   - The loop (session.run) owns the consumer, every task and the record
//     cache: it counts records (count.go), runs the rebalance callback
//     (rebalance.go), starts and activates restores, and hands batches to
//     the committer and applies their outcomes (commit.go).
//   - The poller (poller.go) calls the consumer's Poll for the loop and
//     hands over records, events and the rebalance callback in order; a
//     seek drops the records polled before it by generation.
//   - The committer (committer.go) owns the producer, the open transaction
//     and the Badger writes of a batch. It runs one batch at a time with
//     the commit function of the session's guarantee, chosen once when the
//     session starts: commitAtLeastOnce (commit_alo.go) or
//     commitExactlyOnce (commit_eos.go). A batch goes in on its channel and
//     its outcome (stored, owed, aborted, failed) comes back when its done
//     closes. Between batches the loop may use the producer itself: with
//     the record cache off it sends each count as it counts it, and it
//     aborts the open transaction when it drops its work. The committer
//     calls Config.OnCommit once a batch is durable.
//   - The delivery tracker (package delivery) reads the producer's
//     delivery reports and answers the committer's waits under its own
//     lock.
//   - A restorer (package restore) per restoring task owns that task's
//     store partition until the loop sees it finished.
//
// Beside the sessions, for the processor's whole run, the standby runner
// (package standby) owns every store partition that is not a task's here:
// the standby tasks it keeps up to date from their changelogs, and the
// stores of tasks gone from here until their cleanup. A task's restore
// takes its partition over from it synchronously before it reads the
// store (releaseStandby), and the loop gives it back when the task leaves
// (removeTask); the placement comes
// in through SetStandbys (standbys.go). e2e TestLostMemberIsTakenOverFromStandbys.
//
// HTTP handlers read committed values straight from the store and the task
// table through an atomically swapped snapshot (publishTasks); they never
// touch the loop's state.
//
// # Rebalances
//
// A cooperative rebalance is routine: the member keeps counting the
// partitions it keeps, commits the partitions it gives up in the
// revocation (commitRevoked), and never ends its session for it. An offset
// commit the group refuses while it rebalances (ILLEGAL_GENERATION,
// REBALANCE_IN_PROGRESS) leaves its batch stored and its offsets owed by
// the tasks, committed again in the new generation (at_least_once); under
// exactly_once_v2 the transaction aborts and its records are redone in
// place (e2e TestRoutineRebalancesCountExactlyAtLeastOnce,
// TestRollingRestart).
//
// # Sessions
//
// Errors the loop cannot recover from in place (a fenced producer, a
// broker gone past the delivery timeout) end the session: its uncommitted
// work is dropped, the clients are closed, and a new session starts after
// a backoff, restoring each task's small delta from its checkpoint.
// Nothing committed is lost and nothing uncommitted is kept.
package processor
