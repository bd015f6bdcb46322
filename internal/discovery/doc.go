// Package discovery answers "which member owns this key, and where is it?"
// with no infrastructure beyond Kafka itself.
//
// A key's partition comes from the producers' partitioner (package
// partitioner). The partition's member comes from the consumer group's own
// description (DescribeConsumerGroups: each member's group.instance.id and
// assignment), and the member's URL from ABACUS_PEER_URL_TEMPLATE, by
// default the StatefulSet's stable DNS name. The view is refreshed by one
// goroutine: periodically, when this member's assignment changes, and after
// a routing miss (Trigger, coalesced and rate-limited). Readers get the
// last complete view without waiting; its age is part of it.
//
// The same goroutine watches for input partitions that no member owns in
// a Stable group (orphanWatch) and has one member make the group
// rebalance (Config.OnOrphaned).
//
// Each view also places the standby copies of the tasks
// (ABACUS_NUM_STANDBY_REPLICAS) over its members, by a rule every member
// computes alike from the same description (placeStandbys), and is handed
// to Config.OnView, which keeps this member's standby tasks in step.
package discovery
