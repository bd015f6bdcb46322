package broker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kfake's own lines go to the broker's logger at the level kfake gives
// them, marked logger=kfake; a level the logger drops is not formatted.
func TestKfakeLinesGoToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := kfakeLogger{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Logf(kfake.LogLevelError, "persist to disk: %v", "disk full")
	l.Logf(kfake.LogLevelWarn, "txn: EndTxn slow pid=%d", 7)
	l.Logf(kfake.LogLevelInfo, "consumerJoin: group=%s", "g")
	l.Logf(kfake.LogLevelDebug, "RECONCILE SEND: %s", "dropped")
	l.Logf(kfake.LogLevelNone, "never")
	var got []string
	for _, raw := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var line struct{ Level, Msg, Logger string }
		if err := json.Unmarshal(raw, &line); err != nil {
			t.Fatalf("not JSON: %s", raw)
		}
		if line.Logger != "kfake" {
			t.Errorf("line %s: logger %q, want kfake", raw, line.Logger)
		}
		got = append(got, line.Level+" "+line.Msg)
	}
	want := []string{"ERROR persist to disk: disk full", "WARN txn: EndTxn slow pid=7", "INFO consumerJoin: group=g"}
	if len(got) != len(want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, got[i], want[i])
		}
	}
}
