// Package sse holds the live-subscription benchmark: what 1,000
// Server-Sent-Events subscribers (and one that never reads) cost an abacus
// instance's processing throughput, and how long a produced record takes
// to reach 100 subscribers as an event, at 1,000 and 10,000 records/s.
//
// Run it with
//
//	go test -run='^$' -bench=. -benchtime=1x -timeout=30m ./bench/sse/
//
// Without -bench, `go test ./...` runs only a small self-test of the SSE
// reader. abacus runs as the real binary (testkit.Binary) against one kfake
// broker in the benchmark process, on loopback; the subscribers are plain
// HTTP/1.1 clients in the benchmark process. See RESULTS.md beside this
// file for the figures and how to read them, and the SSE_BENCH_*
// environment variables in sse_test.go for the knobs.
package sse
