//go:build race

package testkit

// raceEnabled builds the instances under test with the race detector too.
const raceEnabled = true
