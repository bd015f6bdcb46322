package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The README's tour, as a newcomer types it: the binary with no settings
// but its addresses (an embedded broker), kcat in and out, curl.
func TestReadmeTour(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: .ci/run installs it (apt-get install kcat)")
	}
	brokerAddr := "127.0.0.1:" + itoa(testkit.FreePort(t))
	dir := t.TempDir()
	cmd := exec.Command(testkit.Binary(t))
	httpAddr := "127.0.0.1:" + itoa(testkit.FreePort(t))
	cmd.Env = append(os.Environ(), "ABACUS_EMBEDDED_BROKER="+brokerAddr, "ABACUS_HTTP_ADDR="+httpAddr)
	cmd.Dir = dir
	log := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Log(log.String())
		}
	})
	in := &testkit.Instance{URL: "http://" + httpAddr}
	testkit.Eventually(t, time.Minute, func() error {
		code, body, err := in.Get("/readyz")
		if err == nil && code != 200 {
			err = testkit.Errorf("readyz %d %s", code, body)
		}
		return err
	})

	produce := exec.Command(kcat, "-P", "-b", brokerAddr, "-t", "input-topic", "-K:", "-X", "partitioner=murmur2_random")
	produce.Stdin = strings.NewReader("foo:bar\nhello:world\nhello:universe\nfoo:baz\njohn:doe\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		code, body, err := in.Get("/api/v1/stores/counts-store/keys/foo")
		if err == nil && (code != 200 || !strings.Contains(string(body), `"value":2`) || !strings.Contains(string(body), `"offset":2`)) {
			err = testkit.Errorf("foo: %d %s", code, body)
		}
		return err
	})
	code, body, err := in.Get("/api/v1/stores/counts-store/keys/foo")
	if err != nil || code != 200 || string(body) != `{"key":"foo","value":2,"partition":0,"served_by":"`+hostname(t)+`","position":{"partition":0,"offset":2}}`+"\n" {
		t.Errorf("curl foo: %d %q %v", code, body, err)
	}
	code, body, err = in.Get("/api/v1/stores/counts-store/keys/foo?after=0:1")
	if err != nil || code != 200 || string(body) != `{"key":"foo","value":2,"partition":0,"served_by":"`+hostname(t)+`","position":{"partition":0,"offset":2}}`+"\n" {
		t.Errorf("curl foo after 0:1: %d %q %v", code, body, err)
	}
	consume := exec.Command(kcat, "-C", "-b", brokerAddr, "-t", "counts-topic", "-e", "-q", "-f", "%k %s\n")
	out, err := consume.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	last := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		last[k] = v
	}
	if last["foo"] != "2" || last["hello"] != "2" || last["john"] != "1" || len(last) != 3 {
		t.Errorf("counts-topic last values %v, want foo 2, hello 2, john 1", last)
	}
	if !strings.Contains(log.String(), "EMBEDDED Kafka-protocol broker") {
		t.Errorf("the first log lines do not say loudly that the broker is embedded")
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
