// Package abacus is the vocabulary the service's parts share where they
// meet: why a count cannot be read on this member (the errors), which
// member owns which partitions (Member), how a task and a partition stand
// (TaskStatus, PartitionOffsets), and a count made durable (Update).
//
// The processor produces these values, discovery and the subscription hub
// pass them on, and the HTTP API serves them; with one definition here,
// cmd/server wires those packages together without translating between
// copies. What belongs here is data and sentinel errors only: no behaviour,
// no Kafka, no Badger, no HTTP. The package imports nothing of the project,
// so that every other package may import it and none is imported upward.
package abacus
