package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The raw ceiling runs in a child process, this test binary run again with
// rawEnv set: like abacus it then has a process (and a Go runtime) of its
// own, and does not share the broker's garbage collector or heap.
const (
	rawEnv      = "ABACUS_BENCH_RAW_CONSUMER" // brokers,topic,group,n as JSON
	rawDeadline = 3 * time.Minute
)

// rawConfig is the raw ceiling's consumer: librdkafka's defaults except the
// ones abacus's own input consumer changes, which matter for throughput.
func rawConfig(brokers, group string) *kafka.ConfigMap {
	return &kafka.ConfigMap{
		"bootstrap.servers": brokers,
		"group.id":          group,
		"auto.offset.reset": "earliest",
		// abacus sets this too: librdkafka's default of 1000 ms idles the
		// fetcher whenever queued.min.messages are queued, which against a
		// fast broker caps a fast consumer far below what it can read.
		"fetch.queue.backoff.ms":        10,
		"partition.assignment.strategy": "cooperative-sticky",
		"enable.auto.commit":            false,
		"enable.partition.eof":          false,
		"log_level":                     4,
		"enable.metrics.push":           false,
	}
}

// rawSettings is what BENCHMARKS.md and the table say about rawConfig.
const rawSettings = "group consumer (subscribe, cooperative-sticky), auto.offset.reset=earliest, fetch.queue.backoff.ms=10, enable.auto.commit=false, other properties librdkafka defaults"

type rawRequest struct {
	Brokers string `json:"brokers"`
	Topic   string `json:"topic"`
	Group   string `json:"group"`
	N       int64  `json:"n"`
}

type rawResult struct {
	Records  int64         `json:"records"`
	Elapsed  time.Duration `json:"elapsed"` // first record to the n-th
	Startup  time.Duration `json:"startup"` // consumer created to first record
	CPU      time.Duration `json:"cpu"`     // of the whole child process
	PeakRSS  int64         `json:"peak_rss"`
	KeyBytes int64         `json:"key_bytes"`
	Err      string        `json:"err,omitempty"`
}

func TestMain(m *testing.M) {
	if req := os.Getenv(rawEnv); req != "" {
		res := rawConsume(req)
		_ = json.NewEncoder(os.Stdout).Encode(res)
		if res.Err != "" {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rawConsume reads n records of topic in a fresh group and times the
// stretch from the first record to the n-th. Touching each key (summing
// its length) is all the work it does per record.
func rawConsume(raw string) (res rawResult) {
	var req rawRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return rawResult{Err: err.Error()}
	}
	created := time.Now()
	c, err := kafka.NewConsumer(rawConfig(req.Brokers, req.Group))
	if err != nil {
		return rawResult{Err: err.Error()}
	}
	defer c.Close()
	if err := c.SubscribeTopics([]string{req.Topic}, nil); err != nil {
		return rawResult{Err: err.Error()}
	}
	var first time.Time
	deadline := time.Now().Add(rawDeadline)
	for res.Records < req.N {
		if time.Now().After(deadline) {
			return rawResult{Err: fmt.Sprintf("read %d of %d records within %s", res.Records, req.N, rawDeadline)}
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if res.Records == 0 {
				first = time.Now()
			}
			res.Records++
			res.KeyBytes += int64(len(e.Key))
		case kafka.Error:
			if e.IsFatal() {
				return rawResult{Err: e.Error()}
			}
		}
	}
	res.Elapsed = time.Since(first)
	res.Startup = first.Sub(created)
	if cpu, err := testkit.CPUTime(os.Getpid()); err == nil {
		res.CPU = cpu
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		res.PeakRSS, _ = statusField(st, "VmHWM:")
	}
	return res
}

// runRaw runs the raw ceiling in a child process and returns its result.
func runRaw(b testing.TB, brokers, topic, group string, n int64) rawResult {
	b.Helper()
	req, _ := json.Marshal(rawRequest{Brokers: brokers, Topic: topic, Group: group, N: n})
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), rawEnv+"="+string(req))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	var res rawResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		b.Fatalf("raw consumer: %v, output %q (%v)", err, out, jerr)
	}
	if res.Err != "" || err != nil {
		b.Fatalf("raw consumer: %s %v", res.Err, err)
	}
	if res.Records != n {
		b.Fatalf("raw consumer read %d records, want %d", res.Records, n)
	}
	return res
}

func (r rawResult) rate() float64 { return float64(r.Records) / r.Elapsed.Seconds() }
