// Package peer moves copies of task stores between members (docs/state.md,
// "Peer snapshots"). Copies serves this member's copies to the others
// over the api's snapshot routes; a Seeder fills a task store that has no
// checkpoint from the most advanced copy another member holds, so that
// the task's restore reads only the changelog past that copy's
// checkpoint instead of all of it.
//
// Every call goes as a forwarded lookup does (api.PeerTransport, the
// member's own credentials), and nothing a peer sends is trusted: a
// snapshot is written into the store as it arrives but its checkpoint
// only once the whole stream is verified (store.ReadSnapshot), and any
// failure leaves the store without a checkpoint for the restore to wipe
// and read from the changelog's start.
package peer
