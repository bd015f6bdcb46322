package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/abacus-streams/abacus/internal/broker"
)

// runBroker runs the embedded broker alone until ctx ends.
func runBroker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("abacus broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "address to listen on")
	partitions := fs.Int("partitions", 4, "partitions of auto-created topics")
	dataDir := fs.String("data-dir", "", "directory that keeps the broker's log across restarts (empty: memory only)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("invalid --log-format=%q: must be one of text, json", *logFormat)
	}
	log := newLogger(stderr, *logLevel, *logFormat)
	slog.SetDefault(log)
	b, err := broker.Start(broker.Config{Addr: *addr, Partitions: *partitions, DataDir: *dataDir, Logger: log})
	if err != nil {
		if *logFormat == "json" {
			return logExit(log, err)
		}
		return err
	}
	log.Info("embedded Kafka-protocol broker listening", "addr", b.Addr(), "partitions", *partitions, "data_dir", *dataDir)
	<-ctx.Done()
	log.Info("stopping broker")
	b.Close()
	return nil
}
