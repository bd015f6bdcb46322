// Package bench holds abacus's end-to-end performance benchmark, run by
// `make bench` (see BENCHMARKS.md at the repository root for the figures and
// how to read them).
//
// Everything runs in one `go test -bench` process against one kfake broker
// on loopback TCP, with the real librdkafka clients:
//
//   - the raw ceiling: a plain confluent-kafka-go group consumer, tuned as
//     abacus tunes its own, reading the input once (run as a child process,
//     like abacus, so that it does not share a Go runtime with the broker);
//   - abacus at_least_once and exactly_once_v2, each from its first record
//     to the input fully committed by its consumer group;
//   - the full restore of the at_least_once changelog into an empty state dir;
//   - the record cache switched off, for its effect on throughput and on the
//     output topic;
//   - 12 partitions and 1,000,000 distinct keys, for the peak RSS.
//
// abacus runs as the real binary (built once by testkit.Binary) in its own
// process, so its peak RSS (VmHWM) and CPU time are read from /proc. Every
// scenario runs once per round (ABACUS_BENCH_ROUNDS, default 3), rounds
// interleaved, and the median round is reported.
//
// For finding where the time goes: ABACUS_BENCH_PERF_DIR records every
// abacus process with perf, and BenchmarkInProcess (not run by make bench)
// runs the processor in this process for Go's CPU, heap and trace profiles
// (ABACUS_BENCH_PROFILE_DIR).
//
// The benchmark prints a table and the ratios against the targets and fails
// only on errors; a missed target is printed as MISSED. Without -bench,
// `go test ./...` runs nothing here.
package bench
