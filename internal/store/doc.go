// Package store keeps the counts of every task of one instance in Badger:
// per key, and per key and window in windowed stores.
//
// One Badger database per instance holds one Partition per task: the keys of
// task p live under a 4-byte big-endian prefix p, beside p's checkpoint, the
// changelog offset up to which that partition's values are complete, and
// beside the task's windowed stores (WindowedStore), each with the
// checkpoint of its own changelog. Sharing one database bounds memory by one
// set of memtables and caches however many tasks an instance owns, while
// each task still reads, writes, scans and wipes only its own slice.
//
// Badger only ever holds committed state: Commit writes a task's values and
// its new checkpoint in one Badger transaction. When a commit is larger than
// one transaction can hold it is written in several, the checkpoint in the
// last; that is safe because every value written is already committed in the
// changelog past the old checkpoint, so a crash between them leaves values
// that the restore from checkpoint+1 rewrites with the same or newer ones.
//
// Layout. Every key of task p begins with p as 4 bytes big-endian, then a
// byte that says what it is:
//
//	<p>'k'<key>                         the count of key (the count store)
//	<p>'m'checkpoint                    the count store's checkpoint
//	<p>'w'<len(S)><S><window key>       a window's count in windowed store S
//	<p>'x'<len(S)><S><end><window key>  S's expiry index entry of the window (empty)
//	<p>'m'checkpoint/<S>                S's checkpoint (of S's own changelog)
//	<p>'m'streamtime/<S>                S's stream time (epoch milliseconds)
//
// len(S) is one byte (a store name has 1 to 100), end is 8 bytes
// big-endian, values are decimal strings. A window key (windowkey.go) is
// also the key of the store's changelog records, and sorts by key, start
// and end, so a key's windows are adjacent. The expiry index sorts a
// store's windows by end, so ExpireWindows reads those it removes and no
// other; a window's index entry is written before it and removed after it
// (see WindowedStore). A store's changelog restores through the same
// Restorer as the counts' (WindowedStore.NewRestorer), which keeps the
// index too and writes the store's own checkpoint.
//
// Every store of a task commits under one checkpoint protocol: one Batch
// writes the counts and the windows of each windowed store, then every
// store's checkpoint and stream time together in the last transaction
// (txnWriter.writeLast), so each checkpoint only ever covers values
// already written, whichever transaction a crash stops at.
//
// A restore under at-least-once keeps the larger of the stored count and the
// changelog's (NewRestorerKeepingMax): counts only grow, and there a late
// changelog record (a send of a member that lost its partitions, landing
// after the new owner's) must not take a count back.
//
// A Partition is safe for any number of concurrent readers with one writer
// (the task that owns it); the package never imports Kafka.
package store
