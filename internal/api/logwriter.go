package api

import (
	"context"
	"log/slog"
	"strings"
)

// logWriter is an io.Writer whose every write is one line of log at
// level, for what logs to a writer (echo's own logger).
type logWriter struct {
	log   *slog.Logger
	level slog.Level
}

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Log(context.Background(), w.level, strings.TrimSpace(string(p)), "logger", "echo")
	return len(p), nil
}
