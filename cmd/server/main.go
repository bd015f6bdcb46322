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
		fmt.Fprintln(os.Stderr, "abacus:", err)
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

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
