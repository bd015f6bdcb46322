// Package testkit holds what the integration tests share: a kfake broker
// over TCP, a real confluent-kafka-go producer and reader, the abacus binary
// built once per test process, and instances run as separate processes
// (so that kill -9 is a real crash). Every wait polls a condition with a
// deadline; nothing sleeps for a fixed time to let something happen.
package testkit
