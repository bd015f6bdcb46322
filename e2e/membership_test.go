package e2e

import (
	"bytes"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// A member cut off from the broker stops answering for its tasks once it
// has been out of reach of the group coordinator for half the session
// timeout: by the full timeout the group may have given its partitions to
// another member, and librdkafka notices that by itself only in the steady
// state, not mid-rebalance (docs/reliability.md, "The broker is out of
// reach"). When it is back and the group still counts it a member, it
// answers again without a rebalance.
//
// The session timeout is 16 s, so librdkafka's own detection would come at
// 16 s; the member stops answering at 8-9 s, and the test wants 503
// `moving` within 12 s of the cut, which lasts 12 s.
func TestMemberOutOfReachStopsAnsweringUntilConfirmed(t *testing.T) {
	_, proxy := testkit.StartBrokerBehindProxy(t, 4)
	brokers := proxy.Addr()
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: brokers, Env: map[string]string{
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":       "16000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS":    "1000",
		"ABACUS_KAFKA_RECONNECT_BACKOFF_MS":     "100",
		"ABACUS_KAFKA_RECONNECT_BACKOFF_MAX_MS": "500",
	}})
	in.WaitReady(time.Minute)
	w := skewed(41, 2_000, 100)
	testkit.Produce(t, brokers, input, "murmur2_random", w.records)
	waitCounts(t, time.Minute, []*testkit.Instance{in}, w.truth, false)
	var key string
	for k := range w.truth {
		key = k
		break
	}
	rebalances := metric(t, in, "abacus_rebalances_total")

	proxy.Cut()
	cut := time.Now()
	var body []byte
	testkit.Eventually(t, 12*time.Second, func() error {
		code, b, err := in.Get("/api/v1/stores/" + storeName + "/keys/" + url.PathEscape(key))
		if err != nil {
			return err
		}
		if code == 200 {
			return fmt.Errorf("still answering %d s after the cut", int(time.Since(cut).Seconds()))
		}
		body = b
		return nil
	})
	took := time.Since(cut)
	if !bytes.Contains(body, []byte(`"code":"moving"`)) || !bytes.Contains(body, []byte("out of reach of the consumer group's coordinator")) {
		t.Fatalf("answer %.1f s after the cut: %s; want 503 moving, out of reach of the coordinator", took.Seconds(), body)
	}
	if got := metric(t, in, "abacus_group_membership_unconfirmed"); got != 1 {
		t.Errorf("abacus_group_membership_unconfirmed = %v while out of reach, want 1", got)
	}
	t.Logf("stopped answering %.1f s after the cut", took.Seconds())
	if time.Since(cut) < 12*time.Second {
		time.Sleep(12*time.Second - time.Since(cut)) // the cut lasts 12 s: shorter than the session timeout
	}
	proxy.Restore()

	testkit.Eventually(t, 30*time.Second, func() error {
		kc, code, err := in.Count(storeName, key)
		if err != nil || code != 200 {
			return fmt.Errorf("GET %s: %d %v", key, code, err)
		}
		if kc.Value != w.truth[key] {
			t.Fatalf("%q = %d after the cut, want %d", key, kc.Value, w.truth[key])
		}
		return nil
	})
	if got := metric(t, in, "abacus_group_membership_unconfirmed"); got != 0 {
		t.Errorf("abacus_group_membership_unconfirmed = %v once confirmed, want 0", got)
	}
	if got := metric(t, in, "abacus_rebalances_total"); got != rebalances {
		t.Errorf("rebalances went from %v to %v: the member was expired, so the test did not show a confirmation without a rebalance", rebalances, got)
	}
	more := skewed(42, 1_000, 50)
	testkit.Produce(t, brokers, input, "murmur2_random", more.records)
	for k, n := range w.truth {
		more.truth[k] += n
	}
	waitCounts(t, time.Minute, []*testkit.Instance{in}, more.truth, false)
}
