// Package api is abacus's HTTP surface: probes, Prometheus metrics, and the
// interactive queries over the counts and the windowed counts. It depends
// only on the small interfaces it declares here (Counts, Windows, Health)
// and the shared types of package abacus; cmd/server wires the processor
// behind them, so nothing here knows Kafka or Badger.
//
// Every error answers with {"error": {"code": "...", "message": "..."}} and
// the right status; a key that is restoring or moving answers 503 with
// Retry-After, never a wrong count and never a hang.
package api
