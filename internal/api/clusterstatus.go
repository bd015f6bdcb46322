package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
)

// PathClusterStatus is the whole group's status in one call, the web
// console's overview.
const PathClusterStatus = "/api/v1/cluster/status"

// The member asked for the group's status asks every member of its view
// for its own, all at once, each within statusDeadline, with the
// caller's credentials, as a forwarded lookup goes: a member that does
// not answer in time is reported unreachable, with why, and never holds
// the others' answers back. A member whose process is gone refuses the
// connection, so it shows as unreachable at once, even while the group
// (and so the view) still lists it (TestClusterStatusMemberDown).
// ?local=true, or a request from another member, answers with this
// member's row alone.

// statusDeadline bounds the call to each member.
const statusDeadline = time.Second

// The metrics a member's row is read from; their names are fixed
// (docs/operations.md, "Metrics").
const (
	metricRecordsProcessed = "abacus_records_processed_total"
	metricConsumerLag      = "abacus_consumer_lag"
)

// clusterStatus is the body of /api/v1/cluster/status.
type clusterStatus struct {
	Self         string           `json:"self"`
	Partitions   int32            `json:"partitions"`
	RefreshedAt  string           `json:"refreshed_at"`
	AgeSeconds   float64          `json:"age_seconds"`
	Members      []memberStatus   `json:"members"`
	PartitionMap []partitionPlace `json:"partition_map"`
}

// memberStatus is one member's row: whether it answered, and its own
// figures when it did.
type memberStatus struct {
	Member    string `json:"member"`
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"`
	// Error says why the member is not reachable; empty when it is.
	Error string `json:"error"`
	*memberFigures
}

// memberFigures are what a member tells of itself.
type memberFigures struct {
	State string `json:"state"`
	// Reason is the ERROR state's, as /readyz gives it.
	Reason  string `json:"reason,omitempty"`
	Version string `json:"version"`
	memberTasks
	// Lag is the input records not yet committed of the member's
	// partitions, and RecordsProcessed the records it counted since it
	// started (the console makes rates of successive answers).
	Lag              int64 `json:"lag"`
	RecordsProcessed int64 `json:"records_processed"`
}

// partitionPlace is where a partition lives in the view.
type partitionPlace struct {
	Partition int32 `json:"partition"`
	// Owner is empty when no member owns the partition.
	Owner    string   `json:"owner"`
	Standbys []string `json:"standbys"`
}

func (s *Server) clusterStatus(c echo.Context) error {
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	view, refreshed, n := s.cfg.Router.Members()
	out := clusterStatus{Self: s.cfg.Instance, Partitions: n, Members: []memberStatus{}, PartitionMap: placements(view, n)}
	out.RefreshedAt, out.AgeSeconds = viewAge(refreshed)
	if local || forwarded(c) {
		out.Members = append(out.Members, s.ownStatus(s.memberOf(view)))
		return c.JSON(http.StatusOK, out)
	}
	auth := c.Request().Header.Get("Authorization")
	rows, _ := fanOut(s, view,
		func() (memberStatus, error) { return s.ownStatus(s.memberOf(view)), nil },
		func(m abacus.Member) (memberStatus, error) {
			return s.remoteStatus(c.Request().Context(), m, auth), nil
		})
	out.Members = append(out.Members, rows...)
	return c.JSON(http.StatusOK, out)
}

// memberOf is this member as the view lists it.
func (s *Server) memberOf(view []abacus.Member) abacus.Member {
	i := slices.IndexFunc(view, func(m abacus.Member) bool { return m.Name == s.cfg.Instance })
	if i < 0 {
		return abacus.Member{Name: s.cfg.Instance}
	}
	return view[i]
}

// ownStatus is this member's row, m its entry in the view.
func (s *Server) ownStatus(m abacus.Member) memberStatus {
	f := &memberFigures{Version: s.cfg.Version, memberTasks: s.tasks()}
	if h := s.cfg.Health; h != nil {
		f.State, f.Reason = h.State(), h.Error()
	}
	// A gatherer that fails part way still returns what it read; the
	// figures are sums of what is there.
	families, _ := s.cfg.Gatherer.Gather()
	f.Lag, f.RecordsProcessed = int64(sumMetric(families, metricConsumerLag)), int64(sumMetric(families, metricRecordsProcessed))
	return memberStatus{Member: s.cfg.Instance, URL: m.URL, Reachable: true, memberFigures: f}
}

// sumMetric is the sum of a counter's or gauge's series.
func sumMetric(families []*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// remoteStatus asks member m for its own row, within statusDeadline.
func (s *Server) remoteStatus(ctx context.Context, m abacus.Member, authorization string) memberStatus {
	row := memberStatus{Member: m.Name, URL: m.URL}
	ctx, cancel := context.WithTimeout(ctx, statusDeadline)
	defer cancel()
	noteForward(ctx, m.Name)
	theirs, err := s.askStatus(ctx, m, authorization)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.Reachable, row.memberFigures = true, theirs
	return row
}

// askStatus reads member m's figures about itself.
func (s *Server) askStatus(ctx context.Context, m abacus.Member, authorization string) (*memberFigures, error) {
	resp, err := s.get(ctx, m.URL+PathClusterStatus+"?local=true", authorization)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %s", statusDeadline)
		}
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("answer cut off: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("answered %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("answered %d", resp.StatusCode)
	}
	// (json cannot fill memberStatus's embedded pointer to an
	// unexported type: the row is read with its figures by value.)
	var theirs struct {
		Members []struct {
			Member string `json:"member"`
			memberFigures
		} `json:"members"`
	}
	if err := json.Unmarshal(body, &theirs); err != nil {
		return nil, fmt.Errorf("answer is not a status: %w", err)
	}
	switch {
	case len(theirs.Members) != 1:
		return nil, fmt.Errorf("answer holds %d rows, not its own", len(theirs.Members))
	case theirs.Members[0].Member != m.Name:
		// Its URL (ABACUS_PEER_URL_TEMPLATE) leads to another member.
		return nil, fmt.Errorf("%s answers as member %q: check ABACUS_PEER_URL_TEMPLATE", m.URL, theirs.Members[0].Member)
	}
	return &theirs.Members[0].memberFigures, nil
}

// placements is each of the n partitions' owner and standbys in the view.
func placements(view []abacus.Member, n int32) []partitionPlace {
	out := make([]partitionPlace, n)
	for p := range n {
		out[p] = partitionPlace{Partition: p, Standbys: []string{}}
	}
	for _, m := range view {
		for _, p := range m.Partitions {
			if p >= 0 && p < n && out[p].Owner == "" {
				out[p].Owner = m.Name
			}
		}
		for _, p := range m.Standbys {
			if p >= 0 && p < n {
				out[p].Standbys = append(out[p].Standbys, m.Name)
			}
		}
	}
	return out
}

// viewAge is when the view was read (RFC 3339, UTC) and its age in
// seconds; empty and 0 before the first read.
func viewAge(refreshed time.Time) (string, float64) {
	if refreshed.IsZero() {
		return "", 0
	}
	return refreshed.UTC().Format(time.RFC3339Nano), time.Since(refreshed).Seconds()
}
