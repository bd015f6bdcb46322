package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

// Bounded-staleness lookups (?max_lag=N): any member that holds a copy of
// the key's task answers, if its copy lags at most N changelog records
// behind the changelog's end it last saw. docs/queries.md, "Consistency".

// Headers that say how fresh an answer of a bounded lookup is.
const (
	LagHeader   = "Abacus-Lag"
	StaleHeader = "Abacus-Stale"
)

// maxLagParam parses ?max_lag; bounded is false without it.
func maxLagParam(c echo.Context) (maxLag int64, bounded bool, err error) {
	params, err := parseQuery(c)
	if err != nil {
		return 0, false, err
	}
	v := params.Get("max_lag")
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fail(http.StatusBadRequest, "bad_parameter", "max_lag must be a number of records, 0 or more, not %q", v)
	}
	return n, true, nil
}

// getKeyBounded answers a lookup with ?max_lag: from this member's copy
// of the key's task when it has one fresh enough, else from the owner,
// else from the members that keep a standby of the task, in that order.
// Only when no copy is fresh enough is the answer 503 too_stale, naming
// the best lag on offer; a forwarded request answers from here only.
func (s *Server) getKeyBounded(c echo.Context, store, key string, maxLag int64, local bool) error {
	count, found, err := s.cfg.Counts.GetCopy(store, []byte(key), maxLag)
	var stale *abacus.StaleError
	var absent *Count // a lagging copy here without the key
	switch {
	case errors.Is(err, abacus.ErrUnknownStore):
		return s.unknownStore(store)
	case err == nil && !found && count.Lag != nil && *count.Lag > 0:
		// A copy behind its changelog may not have the key yet (a standby
		// that just started): a fresher copy is asked first.
		absent = &count
	case err == nil:
		return s.answerCopy(c, key, count, found)
	case errors.As(err, &stale):
	case errors.Is(err, abacus.ErrNotOwned), errors.Is(err, abacus.ErrRestoring):
	default:
		return fmt.Errorf("get key: %w", err)
	}
	best := int64(-1)
	if stale != nil {
		best = stale.Lag
	}
	if !local && !forwarded(c) {
		for _, m := range s.copyHolders(count.Partition) {
			done, lag, err := s.askCopy(c, m)
			if done || err != nil {
				return err
			}
			if lag >= 0 && (best < 0 || lag < best) {
				best = lag
			}
		}
	}
	if absent != nil {
		return s.answerCopy(c, key, *absent, false)
	}
	if best >= 0 {
		c.Response().Header().Set(LagHeader, strconv.FormatInt(best, 10))
		return unavailable("too_stale", "no copy of partition %d of key %q lags at most %d changelog records: the freshest lags %d; retry shortly, or accept more", count.Partition, key, maxLag, best)
	}
	s.refresh()
	return unavailable("moving", "no member holds a copy of partition %d of key %q that answers right now; retry shortly", count.Partition, key)
}

// answerCopy answers a lookup from a copy, saying how fresh it is.
func (s *Server) answerCopy(c echo.Context, key string, count Count, found bool) error {
	if count.Lag == nil || count.Stale == nil {
		return fmt.Errorf("get key: the copy's lag is not known")
	}
	h := c.Response().Header()
	h.Set(LagHeader, strconv.FormatInt(*count.Lag, 10))
	h.Set(StaleHeader, strconv.FormatBool(*count.Stale))
	if !found {
		return fail(http.StatusNotFound, "key_not_found", "key %q has no count in this member's copy of partition %d", key, count.Partition)
	}
	count.Key = key
	count.ServedBy = s.cfg.Instance
	return c.JSON(http.StatusOK, count)
}

// copyHolders are the members to ask for a copy of partition p: its
// owner, then the members keeping a standby of it, then the others (a
// view taken while the group rebalances names no owner, and a member may
// still keep the store of a task it gave up); never this member.
func (s *Server) copyHolders(p int32) []abacus.Member {
	if s.cfg.Router == nil {
		return nil
	}
	members, _, _ := s.cfg.Router.Members()
	var owners, standbys, others []abacus.Member
	for _, m := range members {
		switch {
		case m.Name == s.cfg.Instance:
		case slices.Contains(m.Partitions, p):
			owners = append(owners, m)
		case slices.Contains(m.Standbys, p):
			standbys = append(standbys, m)
		default:
			others = append(others, m)
		}
	}
	return slices.Concat(owners, standbys, others)
}

// askCopy forwards the lookup to member m, which answers from its own
// copy. An answer (200 or 404) is relayed, and done; otherwise lag is the
// lag m named in its 503 too_stale, or -1.
func (s *Server) askCopy(c echo.Context, m abacus.Member) (done bool, lag int64, err error) {
	req := c.Request()
	target := m.URL + req.URL.EscapedPath() + "?" + req.URL.RawQuery
	noteForward(req.Context(), m.Name)
	resp, err := s.get(req.Context(), target, req.Header.Get("Authorization"))
	if err != nil {
		s.metrics.forwarded.WithLabelValues("error").Inc()
		return false, -1, nil
	}
	defer resp.Body.Close()
	s.metrics.forwarded.WithLabelValues("ok").Inc()
	// A 404 from a lagging copy is the last resort, as here.
	if resp.StatusCode == http.StatusOK || (resp.StatusCode == http.StatusNotFound && resp.Header.Get(LagHeader) == "0") {
		return true, 0, s.relayAnswer(c, resp)
	}
	lag, perr := strconv.ParseInt(resp.Header.Get(LagHeader), 10, 64)
	if perr != nil {
		lag = -1
	}
	return false, lag, nil
}

// scanAllCopies answers a scan with ?max_lag: each partition's keys come
// from the freshest copy of it that lags at most maxLag (an active task
// before any stale copy, then the least lag), on whichever member holds
// it. It asks every member for its bounded local page, picks the copy
// each partition is read from, and merges their keys; the page says the
// largest lag it was read with, and whether any copy was stale. Only
// when a partition has no copy fresh enough is the answer 503: too_stale
// with the best lag on offer, or incomplete when no member holds a copy
// of it that answers.
func (s *Server) scanAllCopies(ctx context.Context, store string, q ScanQuery, maxLag int64, authorization string) (scanPage, error) {
	members, _, n := s.cfg.Router.Members()
	if n == 0 {
		return scanPage{}, unavailable("starting", "the partition count is not known yet; retry shortly")
	}
	pages, errs := s.askEveryMember(ctx, members, store, q, maxLag, authorization)
	// from[p] is the member whose copy of partition p is read.
	from := make([]int, n)
	best := make([]PartitionCopy, n)
	offered := make([]int64, n) // the least lag of any copy, -1 for none
	for p := range n {
		from[p], offered[p] = -1, -1
	}
	for i, page := range pages {
		if errs[i] != nil {
			continue // another member may hold a copy
		}
		for _, cp := range page.Copies {
			if cp.Partition < 0 || cp.Partition >= n {
				continue
			}
			if offered[cp.Partition] < 0 || cp.Lag < offered[cp.Partition] {
				offered[cp.Partition] = cp.Lag
			}
			if cp.Lag > maxLag {
				continue
			}
			b := best[cp.Partition]
			if from[cp.Partition] < 0 || (b.Stale && !cp.Stale) || (b.Stale == cp.Stale && cp.Lag < b.Lag) {
				from[cp.Partition], best[cp.Partition] = i, cp
			}
		}
	}
	var lag int64
	stale := false
	for p := range n {
		switch {
		case from[p] >= 0:
			lag, stale = max(lag, best[p].Lag), stale || best[p].Stale
		case offered[p] >= 0:
			return scanPage{}, unavailable("too_stale", "no copy of partition %d lags at most %d changelog records: the freshest lags %d; retry shortly, or accept more", p, maxLag, offered[p])
		default:
			s.refresh()
			return scanPage{}, unavailable("incomplete", "no member holds a copy of partition %d that answers right now; retry shortly", p)
		}
	}
	var items []Item
	for i, page := range pages {
		for _, it := range page.Items {
			if it.Partition >= 0 && it.Partition < n && from[it.Partition] == i {
				items = append(items, it)
			}
		}
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Key, b.Key) })
	if len(items) > q.Limit {
		items = items[:q.Limit]
	}
	if items == nil {
		items = []Item{}
	}
	return scanPage{Items: items, Lag: &lag, Stale: &stale}, nil
}
