package restore

import (
	"errors"
	"strings"
	"testing"
)

// A restore that fails retries; only failingAfter failed attempts in a row
// make it failing (the instance's state then says so), and an attempt
// that gets through clears it.
func TestFailureAfterFailingAfterAttempts(t *testing.T) {
	r := &Restorer{}
	timedOut := errors.New("query changelog watermarks: Local: Timed out")
	r.failing.Store(&restoreFailure{attempts: failingAfter - 1, err: timedOut})
	if err := r.Failure(); err != nil {
		t.Fatalf("after %d failed attempts: %v, want no failure yet", failingAfter-1, err)
	}
	r.failing.Store(&restoreFailure{attempts: failingAfter, err: timedOut})
	if err := r.Failure(); err == nil || !errors.Is(err, timedOut) || !strings.Contains(err.Error(), "restore failed 3 times in a row, retrying") {
		t.Fatalf("after %d failed attempts: %v, want the failure with its count and cause", failingAfter, err)
	}
	r.failing.Store(nil)
	if err := r.Failure(); err != nil {
		t.Fatalf("after an attempt got through: %v, want none", err)
	}
}
