// Package lookup holds the key-lookup load benchmark: requests/s
// and p50/p90/p99/p99.9 latency of GET /api/v1/stores/{store}/keys/{key}
// answered locally, answered with ?local=true, forwarded to the owner, and
// a uniform mix, against three abacus processes on loopback.
//
// Run it with
//
//	go test -run='^$' -bench=Lookups -benchtime=1x -timeout=30m ./bench/lookup
//
// Without -bench, `go test ./...` runs only a small self-test of the load
// generator's HTTP/1.1 reader. See RESULTS.md beside this file for the
// figures, how they were taken and how to read them, and the LOOKUP_*
// environment variables in lookup_test.go for the knobs.
package lookup
