// Package store keeps the counts of every task of one instance in Badger.
//
// One Badger database per instance holds one Partition per task: the keys of
// task p live under a 4-byte big-endian prefix p, beside p's checkpoint, the
// changelog offset up to which that partition's values are complete. Sharing
// one database bounds memory by one set of memtables and caches however many
// tasks an instance owns, while each task still reads, writes, scans and
// wipes only its own slice.
//
// Badger only ever holds committed state: Commit writes a task's values and
// its new checkpoint in one Badger transaction. When a commit is larger than
// one transaction can hold it is written in several, the checkpoint in the
// last; that is safe because every value written is already committed in the
// changelog past the old checkpoint, so a crash between them leaves values
// that the restore from checkpoint+1 rewrites with the same or newer ones.
//
// A restore under at-least-once keeps the larger of the stored count and the
// changelog's (NewRestorerKeepingMax): counts only grow, and there a late
// changelog record (a send of a member that lost its partitions, landing
// after the new owner's) must not take a count back.
//
// A Partition is safe for any number of concurrent readers with one writer
// (the task that owns it); the package never imports Kafka.
package store
