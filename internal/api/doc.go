// Package api is abacus's HTTP surface: probes, Prometheus metrics, the
// interactive queries over the counts and the windowed counts, the
// operations API, and the web console's routes. It depends only on the
// small interfaces it declares here (Counts, Windows, Health, Console)
// and the shared types of package abacus; cmd/server wires the processor
// and the console behind them, so nothing here knows Kafka or Badger.
// The tickets that open subscriptions from a browser are package
// ticket's (tickets.go).
//
// Every error answers with {"error": {"code": "...", "message": "..."}} and
// the right status; a key that is restoring or moving answers 503 with
// Retry-After, never a wrong count and never a hang.
package api
