package console_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/abacus-streams/abacus/internal/testkit"
)

const (
	input = "input-topic"
	store = "counts-store"
)

// records makes n records of key.
func records(key string, n int) []testkit.Record {
	out := make([]testkit.Record, n)
	for i := range out {
		out[i] = testkit.Record{Key: []byte(key), Value: []byte(strconv.Itoa(i))}
	}
	return out
}

// memberRow is a row of the overview's member table.
type memberRow struct {
	Member string `json:"member"`
	Health string `json:"health"`
	State  string `json:"state"`
}

const memberRows = `[...document.querySelectorAll('#members tbody tr')].map(tr => ({member: tr.dataset.member, health: tr.dataset.health, state: tr.dataset.state}))`

// waitMembers waits until the overview lists exactly the members of want
// (name -> health) and returns the rows.
func waitMembers(b *browser, within time.Duration, want map[string]string) []memberRow {
	b.t.Helper()
	return waitJS(b, within, memberRows, func(rows []memberRow) error {
		got := map[string]string{}
		for _, r := range rows {
			got[r.Member] = r.Health
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("the overview shows %+v; want the health of each member %v", rows, want)
		}
		return nil
	})
}

// waitHealth waits until the overview's row of member has health.
func waitHealth(b *browser, within time.Duration, member, health string) {
	b.t.Helper()
	waitJS(b, within, memberRows, func(rows []memberRow) error {
		for _, r := range rows {
			if r.Member == member && r.Health == health {
				return nil
			}
		}
		return fmt.Errorf("the overview shows %+v; want %s %s", rows, member, health)
	})
}

// Three members with data, watched through the console of abacus-0:
// every page shows what the API says, the page talks to its member only,
// and a member killed and restarted turns its row unhealthy and healthy
// again.
func TestConsole(t *testing.T) {
	t.Parallel()
	bk := testkit.StartBroker(t, 4)
	pods := testkit.StartMembers(t, bk.Addr(), 3, map[string]string{
		"ABACUS_NUM_STANDBY_REPLICAS": "1",
		"ABACUS_WINDOWS":              "clicks-1m=tumbling,size=1m",
	})
	var placement testkit.Placement
	testkit.Eventually(t, time.Minute, func() (err error) {
		placement, err = testkit.AgreedPlacement(pods)
		if err == nil && len(placement.Active) != 4 {
			err = fmt.Errorf("owners of %d of 4 partitions known: %s", len(placement.Active), placement)
		}
		return err
	})
	// user-000 is counted once, user-001 twice, ... user-019 20 times.
	var users []testkit.Record
	for i := range 20 {
		users = append(users, records(fmt.Sprintf("user-%03d", i), i+1)...)
	}
	testkit.Produce(t, bk.Addr(), input, "murmur2_random", users)
	waitCount(t, pods[0], "user-019", 20)
	origin := pods[0].URL
	b := newBrowser(t)
	b.open(origin + "/")

	t.Run("Overview", func(t *testing.T) {
		b.t = t
		rows := waitMembers(b, 30*time.Second, map[string]string{"abacus-0": "ok", "abacus-1": "ok", "abacus-2": "ok"})
		for _, r := range rows {
			if r.State != "RUNNING" {
				t.Errorf("%s is %s on the overview", r.Member, r.State)
			}
		}
		// The partition map shows the owners GET /api/v1/cluster names.
		type partitionRow struct {
			Partition string `json:"partition"`
			Owner     string `json:"owner"`
		}
		waitJS(b, 20*time.Second, `[...document.querySelectorAll('#partitions tbody tr')].map(tr => ({partition: tr.dataset.partition, owner: tr.dataset.owner}))`,
			func(rows []partitionRow) error {
				got := map[int32]string{}
				for _, r := range rows {
					p, _ := strconv.Atoi(r.Partition)
					got[int32(p)] = r.Owner
				}
				if fmt.Sprint(got) != fmt.Sprint(placement.Active) {
					return fmt.Errorf("the partition map shows %v; GET /api/v1/cluster: %v", got, placement.Active)
				}
				return nil
			})
		// Records counted while the overview polls, in three rounds a poll
		// or more apart: the throughput chart draws them.
		points := 0
		for round := range 3 {
			var batch []testkit.Record
			for i := range 30 {
				batch = append(batch, records(fmt.Sprintf("load-%02d", i), 50*(round+1))...)
			}
			testkit.Produce(t, bk.Addr(), input, "murmur2_random", batch)
			c := waitChart(b, "chart-throughput", points+2)
			points = c.Points
		}
		waitCount(t, pods[0], "load-29", 300)
		if c := waitChart(b, "chart-throughput", points+1); c.Peak <= 0 {
			t.Errorf("the throughput chart shows no records counted: %+v", c)
		}
		b.screenshot("overview")
	})

	t.Run("Stores", func(t *testing.T) {
		b.t = t
		b.route("#/stores")
		// A lookup typed into the form.
		b.do(chromedp.SendKeys(chromedp.CSS("#lookup-key"), "user-007"),
			chromedp.Click(chromedp.CSS("#lookup-form button[type=submit]")))
		type lookup struct {
			Key       string `json:"key"`
			Value     string `json:"value"`
			Partition string `json:"partition"`
			ServedBy  string `json:"servedBy"`
		}
		got := waitJS(b, 20*time.Second, `{...document.querySelector('#lookup-result dl')?.dataset}`, func(l lookup) error {
			if l.Value == "" {
				return fmt.Errorf("no lookup result shown yet")
			}
			return nil
		})
		api, code, err := pods[1].Count(store, "user-007")
		if err != nil || code != 200 {
			t.Fatalf("GET user-007 from abacus-1: %d %v", code, err)
		}
		p, _ := strconv.Atoi(got.Partition)
		if got.Key != "user-007" || got.Value != "8" || int32(p) != api.Partition ||
			got.ServedBy != api.ServedBy || got.ServedBy != placement.Active[int32(p)] {
			t.Errorf("the Stores page shows %+v; want user-007 = 8 in partition %d served by %s (its owner %s)",
				got, api.Partition, api.ServedBy, placement.Active[int32(p)])
		}
		// A prefix scan, 8 keys a page.
		b.do(chromedp.SendKeys(chromedp.CSS("#scan-prefix"), "user-"),
			chromedp.SetValue(chromedp.CSS("#scan-limit"), "8"),
			chromedp.Click(chromedp.CSS("#scan-form button[type=submit]")))
		page1 := waitScan(b, "user-000", 8)
		b.screenshot("stores")
		b.do(chromedp.Click(chromedp.CSS("#scan-next")))
		page2 := waitScan(b, "user-008", 8)
		b.do(chromedp.Click(chromedp.CSS("#scan-next")))
		page3 := waitScan(b, "user-016", 4)
		var keys []string
		for _, r := range slices.Concat(page1, page2, page3) {
			keys = append(keys, r.Key+"="+r.Value)
		}
		var want []string
		for i := range 20 {
			want = append(want, fmt.Sprintf("user-%03d=%d", i, i+1))
		}
		if !slices.Equal(keys, want) {
			t.Errorf("the scan's pages show %v; want %v", keys, want)
		}
		if disabled := waitJS(b, 5*time.Second, `document.getElementById('scan-next').disabled`, func(bool) error { return nil }); !disabled {
			t.Error("the last page of the scan offers a next page")
		}
	})

	t.Run("Live", func(t *testing.T) {
		b.t = t
		b.route("#/live")
		b.do(chromedp.SendKeys(chromedp.CSS("#live-q"), "live-key"),
			chromedp.Click(chromedp.CSS("#live-form button[type=submit]")))
		// A key never counted opens at 0; then each batch shows.
		waitLive(b, "live-key", 0)
		total := 0
		for _, n := range []int{7, 25, 40} {
			testkit.Produce(t, bk.Addr(), input, "murmur2_random", records("live-key", n))
			total += n
			waitLive(b, "live-key", total)
		}
		if kc, code, err := pods[2].Count(store, "live-key"); err != nil || code != 200 || kc.Value != int64(total) {
			t.Errorf("GET live-key: %d %+v %v; want %d", code, kc, err, total)
		}
		// A prefix: every key's row, and the updates of some.
		b.route("#/live?prefix=user-")
		waitLive(b, "user-019", 20)
		var batch []testkit.Record
		for i := range 5 {
			batch = append(batch, records(fmt.Sprintf("user-%03d", i), 10)...)
		}
		testkit.Produce(t, bk.Addr(), input, "murmur2_random", batch)
		waitLive(b, "user-004", 15)
		b.screenshot("live")
	})

	t.Run("Topology", func(t *testing.T) {
		b.t = t
		b.route("#/topology")
		nodes := waitJS(b, 10*time.Second, `[...document.querySelectorAll('#topology-diagram .node')].map(n => n.dataset.kind + ' ' + n.dataset.name)`,
			func([]string) error { return nil })
		for _, want := range []string{"topic input-topic", "processor count-by-key", "store counts-store",
			"changelog counts-app-counts-store-changelog", "sink output", "topic counts-topic",
			"processor count-by-window-clicks-1m", "store clicks-1m", "changelog counts-app-clicks-1m-changelog",
			"sink output-clicks-1m", "topic clicks-1m-topic", "sink dead-letter", "topic counts-app-dlq"} {
			if !slices.Contains(nodes, want) {
				t.Errorf("the topology diagram has no %q: %v", want, nodes)
			}
		}
		b.screenshot("topology")
	})

	t.Run("Config", func(t *testing.T) {
		b.t = t
		b.route("#/config")
		settings := waitJS(b, 10*time.Second, `Object.fromEntries([...document.querySelectorAll('#config tbody tr')].map(tr => [tr.dataset.setting, tr.querySelector('td.value').textContent]))`,
			func(map[string]string) error { return nil })
		for k, v := range map[string]string{"application_id": "counts-app", "instance_id": "abacus-0", "store": store, "num_standby_replicas": "1"} {
			if settings[k] != v {
				t.Errorf("the config page shows %s = %q; want %q", k, settings[k], v)
			}
		}
		b.screenshot("config")
	})

	t.Run("OnlyItsMember", func(t *testing.T) {
		b.t = t
		if n := b.requestCount(); n < 10 {
			t.Errorf("the network log holds %d requests; the pages made more", n)
		}
		if foreign := b.foreignRequests(origin); len(foreign) > 0 {
			t.Errorf("the page made requests to other hosts than %s:\n%s", origin, strings.Join(foreign, "\n"))
		}
		b.checkProblems()
	})

	t.Run("MemberKilled", func(t *testing.T) {
		b.t = t
		b.route("#/overview")
		waitHealth(b, 20*time.Second, "abacus-2", "ok")
		pods[2].Kill()
		killed := time.Now()
		waitHealth(b, 10*time.Second, "abacus-2", "unhealthy")
		t.Logf("abacus-2 unhealthy on the overview %s after its kill", time.Since(killed).Round(100*time.Millisecond))
		pods[2].Restart()
		restarted := time.Now()
		waitHealth(b, time.Minute, "abacus-2", "ok")
		t.Logf("abacus-2 healthy again %s after its restart", time.Since(restarted).Round(100*time.Millisecond))
		b.checkProblems()
	})
}

// chart is what an overview chart shows: its points and their peak.
type chart struct {
	Points int     `json:"points"`
	Peak   float64 `json:"peak"`
}

// waitChart waits until the chart of id draws at least points points.
func waitChart(b *browser, id string, points int) chart {
	b.t.Helper()
	return waitJS(b, 20*time.Second, fmt.Sprintf(`(() => { const s = document.getElementById(%s); return {points: Number(s.dataset.points), peak: Number(s.dataset.peak)} })()`, jsString(id)),
		func(c chart) error {
			if c.Points < points {
				return fmt.Errorf("the chart %s draws %d points; want %d", id, c.Points, points)
			}
			return nil
		})
}

// waitCount waits until the API answers key's count n.
func waitCount(t *testing.T, in *testkit.Instance, key string, n int64) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		kc, code, err := in.Count(store, key)
		if err != nil || code != 200 || kc.Value != n {
			return fmt.Errorf("GET %s: %d %+v %v; want %d", key, code, kc, err, n)
		}
		return nil
	})
}

type keyRow struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// waitScan waits until the scan table's first key is first and it has n
// rows.
func waitScan(b *browser, first string, n int) []keyRow {
	b.t.Helper()
	return waitJS(b, 20*time.Second, `[...document.querySelectorAll('#scan-results tbody tr')].map(tr => ({key: tr.dataset.key, value: tr.dataset.value}))`,
		func(rows []keyRow) error {
			if len(rows) != n || rows[0].Key != first {
				return fmt.Errorf("the scan shows %v; want %d rows from %s", rows, n, first)
			}
			return nil
		})
}

// waitLive waits until the live table shows key at value.
func waitLive(b *browser, key string, value int) {
	b.t.Helper()
	waitJS(b, 30*time.Second, `[...document.querySelectorAll('#live-table tbody tr')].map(tr => ({key: tr.dataset.key, value: tr.dataset.value}))`,
		func(rows []keyRow) error {
			for _, r := range rows {
				if r.Key == key && r.Value == strconv.Itoa(value) {
					return nil
				}
			}
			status, _ := eval[string](b, `document.getElementById('live-status')?.textContent`)
			return fmt.Errorf("the live table shows %v (%s); want %s = %d", rows, status, key, value)
		})
}
