// Command abacus (built from cmd/server) is the stream-counting service.
//
//	abacus [--setting=value ...]   run the service (see --help for settings)
//	abacus broker [flags]          run the embedded Kafka-protocol broker alone
//	abacus version                 print the version and the source revision
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		// An error logged already was the last line, in the log's format.
		if !errors.As(err, new(loggedError)) {
			fmt.Fprintln(os.Stderr, "abacus:", err)
		}
		os.Exit(1)
	}
}

// run dispatches to a subcommand; only main calls os.Exit.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "broker":
			return runBroker(ctx, args[1:], stderr)
		case "version", "--version":
			fmt.Fprintf(stdout, "abacus %s (commit %s, %s)\n", version, buildCommit(), runtime.Version())
			return nil
		}
	}
	return serve(ctx, args, environ, stderr)
}

// loggedError is an error the process logged as its last line: main exits
// with it without writing it again.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// logExit logs err, why the process exits, with log, where every line
// must be the logger's (json): the last line is then no plain
// "abacus: ..." main would write.
func logExit(log *slog.Logger, err error) error {
	log.Error("exiting on error", "error", err.Error())
	return loggedError{err}
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
