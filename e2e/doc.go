// Package e2e tests abacus as a user runs it: the real binary as separate
// processes against a kfake broker over TCP, fed and read with the real
// confluent-kafka-go client, checked over HTTP and on the topics.
package e2e
