// Package subscribe is the live-count fan-out of one abacus instance: it
// takes the counts each commit made durable and streams them to HTTP
// clients as Server-Sent Events, one stream per subscription to a key
// (?key=K) or to every key with a prefix (?prefix=P). It knows neither
// Kafka nor the processor: the caller publishes Updates and hands Serve a
// Source that reads current values from the store.
//
// # Ownership
//
// A Hub has one goroutine, the loop, started by Run. It alone owns the
// index of streams (key streams in a map by key, prefix streams by prefix
// and matched once per distinct prefix length in use) and so does all the
// fan-out. Publish (called by the processor's committer after each
// commit) and EndPartition (called when a partition leaves) only put work
// in the hub's inbox under a short lock and wake the loop: they never
// block and cost O(updates). Stream handlers reach the index by passing
// the loop closures. Each stream is written by the HTTP handler goroutine
// serving it, and by nothing else; the loop and the handler share only the
// stream's pending set.
//
// # Coalescing: the last value of a key is never lost
//
// Nothing on the way from a commit to a client is a FIFO that can fill up
// and lose the newest value. The inbox holds at most one update per key: an
// update of a key still queued replaces it (in the newer one's place), so
// it is bounded by the keys that changed since the loop's last turn, and a
// loop that falls behind still delivers every key's final value. Each
// stream likewise keeps a pending set of at most one update per key,
// written in publish order when its handler gets to it. A client that
// reads slowly therefore sees fewer events, never stale ones: the values of
// a key it is sent strictly increase and end on the key's current count.
// abacus_sse_updates_coalesced_total counts the values skipped that way.
//
// # Slow subscribers never slow anyone else
//
// The loop never waits for a stream; it only adds to pending sets. A
// stream is dropped, its connection closed and
// abacus_sse_subscribers_dropped_total{reason} counted, when one of its
// writes blocks longer than WriteTimeout (write_timeout; the deadline is
// set through http.ResponseController before every write) or when a prefix
// stream would hold more than Buffer distinct pending keys (overflow; a
// key stream never holds more than one). MaxSubscribers bounds the streams
// of an instance: one more is answered 503 too_many_subscribers with
// Retry-After and counted in abacus_sse_subscribers_rejected_total.
// (A browser's EventSource does not reconnect after a non-200 answer, so
// clients retry such a refusal themselves, after Retry-After.)
//
// # What a subscriber sees
//
// Every stream opens with "retry: <Retry in ms>", then the current value:
// for a key its committed count (0 for a key never counted), for a prefix
// the counts of up to SnapshotLimit matching keys owned here (a comment
// says when the snapshot was truncated). Then each update, in commit
// order:
//
//	id: <partition>-<changelog offset>
//	event: count
//	data: {"key":"k","value":42,"partition":3}
//
// That is a prefix stream's update; its id never decreases within a
// partition, and its current values have none (the changelog offset they
// reflect is unknown). A key stream's events, its current value included,
// have the value as their id ("id: 42"): a key's count only rises, so the
// value is the stream's position, and a client that reconnects with
// Last-Event-ID is sent the current value only when it is above that id
// (stream.floor), then later updates: nothing twice, nothing missed. A
// prefix stream's reconnection is sent the current values again. Updates
// already reflected in the snapshot are not sent after it (a fence on the
// publish sequence around the read, see fence).
// Heartbeat comments (": ping") go out every HeartbeatInterval.
//
// # Windowed stores
//
// A windowed store's windows stream through a hub of their own
// (Config.Windows), one per store, so that a stream never sees another
// store's updates; the hubs of a member share MaxSubscribers and their
// metrics through a Group. The processor's committer feeds such a hub with
// PublishWindows. Everything above holds, with a window, (key, start, end),
// in the place of a key: the inbox and each stream's pending set hold one
// update per window (the window's latest count, or its retraction), so a
// window's update is never lost to another window's of the same key; a
// key stream may hold as many as the key has windows changing, and is
// dropped past Buffer of them like a prefix stream. Events are count
// events whose data is the window:
//
//	id: 3-1187
//	event: count
//	data: {"key":"k","start":1000,"end":6000,"value":4}
//
// with "value":null for a retraction (a session merged into another). The
// id is "<partition>-<offset>" of the windowed store's changelog, for a
// key stream too: a key's windows have no single value to stand for the
// stream's position. The snapshot's windows carry the id of the store's
// checkpoint in their partition, read in one view with them, and the
// fence drops exactly the updates at or below it. Each partition's part
// of the snapshot is followed by the comment ": snapshot end <id>"
// (SnapshotEnd), which no EventSource shows: a member relaying the
// stream reads it to retract, after a move, the windows the new owner's
// snapshot no longer has. A reconnection with Last-Event-ID is sent the
// current windows again, then the updates past the id's offset in its
// partition.
//
// # Partitions that move
//
// When a partition leaves the instance (revocation, lost assignment,
// shutdown of the processor), EndPartition ends every key stream whose key
// lives in it, after the updates published before, with
//
//	event: moved
//	data: {"partition":3,"reason":"revoked"}
//
// and closes the stream. A member that relays a key's stream from its
// owner (internal/api follow.go) does not pass the moved event on: it
// follows the key to the new owner itself. A prefix stream narrowed to one
// partition (Query.OnePartition, what a relaying member opens for each
// partition of a prefix, internal/api prefix.go) is bound to its
// partition as a key stream is. A prefix stream of every partition here
// spans partitions; it is ended the same way when any partition leaves,
// rather than kept streaming without the partition that left, because a
// client that reads on would silently miss that partition's updates.
//
// # Latency
//
// Events are sent after the commit that made them durable (docs/state.md,
// "Commit"), never before: a subscriber never sees a count that a crash
// could take back. So an update waits for the next commit,
// commit.interval/2 on average and at most commit.interval, plus the
// delivery to the client (microseconds through the hub, then the
// network). ABACUS_COMMIT_INTERVAL trades that latency against commit
// overhead.
//
// # Shutdown
//
// When Run's context ends, the hub ends every stream at once (a write
// under way is cut short through its deadline), waits for their handlers
// to return, and refuses new subscriptions with 503 shutting_down, so an
// HTTP server's graceful shutdown is not held up by open streams.
//
// # Server-Sent Events: r3labs/sse/v2 and our own framing
//
// github.com/r3labs/sse/v2 is the project's SSE library, and it reads
// streams: internal/api relays a key's stream from the member that owns
// it, and merges a prefix's streams from every member, by reading each
// member's stream one event at a time with its EventStreamReader
// (internal/api copyEvents), so that only whole events reach the client.
//
// It does not write them. The streams served here are framed by this
// package on net/http (event.go, writer.go), because sse.Server (v2.10.0:
// http.go, stream.go, subscriber.go) cannot serve them without giving up
// a guarantee above, even as one sse.Stream per subscriber, AutoReplay
// off, with our pending set in front of Publish so the loop never blocks:
//
//   - The format. It writes an "id:" line before every data line, an
//     empty one for an event without id (which resets a client's last
//     event id), where snapshot values and moved events have none; it
//     writes retry only inside an event with data, and takes an event
//     with neither data nor a comment for the end of the stream, so a
//     stream cannot open with the retry field alone.
//   - Reconnection. It answers 400 to a Last-Event-ID that is not an
//     integer. Ours are "<partition>-<offset>", and an EventSource does
//     not reconnect after a non-200 answer, so every subscription that
//     had been sent an update would end at its first reconnection.
//   - Coalescing. Between Publish and the client are two FIFOs, the
//     stream's event channel (BufferSize) and each subscriber's channel
//     (64, fixed): values waiting there cannot be replaced by newer ones,
//     so a slow reader would be sent superseded values, and a prefix
//     stream's overflow would show only once they were full.
//   - Slow clients. It ignores the error of every write and goes on
//     until its subscriber channel is closed (or it is sent an empty
//     event), and it flushes after every event (writer.go sends a drained batch in writes of up to 32 KiB).
//     The deadline before each write, the write cut short at shutdown and
//     the drop counting would all live in a wrapper of the response: in
//     our code still.
//   - Ending streams. A moved partition, an overflow and shutdown end
//     streams from the server's side. Removing an sse.Stream while a
//     request on it is open leaves that request's goroutine blocked for
//     ever in Subscriber.close (a send to the stream's deregister channel,
//     which nothing reads once the stream stopped).
//   - Cost. Three more goroutines per subscriber (the stream's loop,
//     ServeHTTP's context watcher, a feeder from our pending set into
//     Publish) and an allocated Event per update, where one handler
//     goroutine now writes into a reused buffer.
//
// A single sse.Stream shared by subscribers would be worse: its loop
// blocks while any one subscriber's channel is full, so one stalled
// client would stall the fan-out. r3labs_test.go pins the format and
// Last-Event-ID behaviours above; if an upgrade changes them it fails,
// and this choice is made again.
package subscribe
