package api

import (
	"net/http/httptest"
	"testing"
)

// The owner's stream passes on everything but its moved event, and the
// catcher notes the last count it passed on, whole events per write.
func TestMovedCatcherHoldsBackTheMovedEvent(t *testing.T) {
	rec := httptest.NewRecorder()
	m := &movedCatcher{ResponseWriter: rec, last: -1}
	writes := []string{
		"retry: 1000\n\n",
		"event: count\ndata: {\"key\":\"k\",\"value\":4,\"partition\":1}\n\n",
		"id: 1:9\nevent: count\ndata: {\"key\":\"k\",\"value\":5,\"partition\":1}\n\nevent: moved\ndata: {\"partition\":1,\"reason\":\"revoked\"}\n\n",
	}
	for _, w := range writes {
		if n, err := m.Write([]byte(w)); err != nil || n != len(w) {
			t.Fatalf("write %q: %d, %v", w, n, err)
		}
	}
	want := writes[0] + writes[1] + "id: 1:9\nevent: count\ndata: {\"key\":\"k\",\"value\":5,\"partition\":1}\n\n"
	if got := rec.Body.String(); got != want {
		t.Fatalf("passed on %q, want %q", got, want)
	}
	if !m.moved || !m.wrote || m.last != 5 {
		t.Fatalf("moved %v, wrote %v, last %d; want true, true, 5", m.moved, m.wrote, m.last)
	}
}
