package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

func unavailable(code, format string, a ...any) *apiError {
	e := fail(http.StatusServiceUnavailable, code, format, a...)
	e.retryAfter = "1"
	return e
}

// forwarded reports whether the request came from another member.
func forwarded(c echo.Context) bool { return c.Request().Header.Get(HopHeader) != "" }

// wantLocal reports whether ?local=true asks for this instance's answer only.
func wantLocal(c echo.Context) (bool, error) {
	params, err := parseQuery(c)
	if err != nil {
		return false, err
	}
	v := params.Get("local")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fail(http.StatusBadRequest, "bad_parameter", "local must be true or false, not %q", v)
	}
	return b, nil
}

// owner is the member the view says owns partition p.
func (s *Server) owner(p int32) (abacus.Member, bool) {
	if s.cfg.Router == nil {
		return abacus.Member{}, false
	}
	members, _, _ := s.cfg.Router.Members()
	for _, m := range members {
		if slices.Contains(m.Partitions, p) {
			return m, true
		}
	}
	return abacus.Member{}, false
}

func (s *Server) refresh() {
	if s.cfg.Router != nil {
		s.cfg.Router.Refresh()
	}
}

// getKey answers a key from here when this instance owns it, and otherwise
// forwards the request once to the owner.
func (s *Server) getKey(c echo.Context) error {
	key, err := pathKey(c)
	if err != nil {
		return err
	}
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	store := c.Param("store")
	if maxLag, bounded, err := maxLagParam(c); err != nil {
		return err
	} else if bounded {
		return s.getKeyBounded(c, store, key, maxLag, local)
	}
	if after, wait, ok, err := afterParams(c); err != nil {
		return err
	} else if ok {
		return s.getKeyAfter(c, store, key, after, wait, local)
	}
	count, found, err := s.cfg.Counts.Get(store, []byte(key))
	switch {
	case errors.Is(err, abacus.ErrUnknownStore):
		return s.unknownStore(store)
	case err != nil:
		return s.notAnswered(c, err, count.Partition, key, local, "get key")
	case !found:
		return fail(http.StatusNotFound, "key_not_found", "key %q has no count in store %q", key, store)
	}
	count.Key = key
	count.ServedBy = s.cfg.Instance
	return c.JSON(http.StatusOK, count)
}

// notAnswered is the answer to a lookup of key, in partition p, that
// this member could not answer with err: forwarded once to the owner when
// this member does not own p (never a forwarded or local request, which
// is a 503), a 503 while p restores or moves here, else err itself, what
// failed. A key's count and its windows answer alike with it.
func (s *Server) notAnswered(c echo.Context, err error, p int32, key string, local bool, what string) error {
	switch {
	case errors.Is(err, abacus.ErrRestoring):
		return unavailable("restoring", "partition %d of key %q is restoring on %s; retry shortly", p, key, s.cfg.Instance)
	case errors.Is(err, abacus.ErrUnconfirmed):
		return unavailable("moving", "%s is out of reach of the consumer group's coordinator: partition %d of key %q may be moving to another member; retry shortly", s.cfg.Instance, p, key)
	case errors.Is(err, abacus.ErrHandingOver):
		return unavailable("moving", "%s is handing partition %d of key %q over to another member; retry shortly", s.cfg.Instance, p, key)
	case errors.Is(err, abacus.ErrNotOwned):
		if local || forwarded(c) {
			s.refresh()
			return unavailable("not_owner", "partition %d of key %q is not owned by %s; retry shortly", p, key, s.cfg.Instance)
		}
		return s.forward(c, p)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// forward relays the request to the owner of partition p, once.
func (s *Server) forward(c echo.Context, p int32) error {
	return s.forwardWith(c, p, s.client, 0)
}

// forwardWith relays the request to the owner of partition p, once,
// through client; a deadline above 0 bounds it (for a client without a
// timeout of its own).
func (s *Server) forwardWith(c echo.Context, p int32, client *http.Client, deadline time.Duration) error {
	m, ok := s.owner(p)
	if !ok || m.Name == s.cfg.Instance {
		s.refresh()
		return unavailable("moving", "partition %d has no known owner right now (it is moving); retry shortly", p)
	}
	req := c.Request()
	target := m.URL + req.URL.EscapedPath()
	if req.URL.RawQuery != "" {
		target += "?" + req.URL.RawQuery
	}
	ctx := req.Context()
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	noteForward(ctx, m.Name)
	resp, err := s.getWith(ctx, client, target, req.Header.Get("Authorization"))
	if err != nil {
		s.metrics.forwarded.WithLabelValues("error").Inc()
		s.refresh()
		return unavailable("owner_unreachable", "owner %s of partition %d did not answer: %v; retry shortly", m.Name, p, err)
	}
	defer resp.Body.Close()
	s.metrics.forwarded.WithLabelValues("ok").Inc()
	return s.relayAnswer(c, resp)
}

// relayAnswer passes another member's (short) answer on as it gave it;
// a 503 there means this member's view may be stale.
func (s *Server) relayAnswer(c echo.Context, resp *http.Response) error {
	if resp.StatusCode == http.StatusServiceUnavailable {
		s.refresh()
	}
	for _, h := range []string{"Content-Type", "Retry-After", LagHeader, StaleHeader, PositionHeader} {
		if v := resp.Header.Get(h); v != "" {
			c.Response().Header().Set(h, v)
		}
	}
	c.Response().WriteHeader(resp.StatusCode)
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	_, err := io.CopyBuffer(c.Response(), io.LimitReader(resp.Body, 1<<20), *buf)
	return err
}

// copyBuffers keep forwarded answers (small JSON bodies) from allocating
// io.Copy's 32 KiB buffer on every request.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// get sends a forwarded GET, marked with the hop header.
func (s *Server) get(ctx context.Context, target, authorization string) (*http.Response, error) {
	return s.getWith(ctx, s.client, target, authorization)
}

// getWith is get through the client given.
func (s *Server) getWith(ctx context.Context, client *http.Client, target, authorization string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(HopHeader, s.cfg.Instance)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return client.Do(req)
}

// keyMetadata names a key's partition, owner and the owner's URL; a
// windowed store's keys are partitioned as the count store's are.
func (s *Server) keyMetadata(c echo.Context) error {
	key, err := pathKey(c)
	if err != nil {
		return err
	}
	if store := c.Param("store"); store != s.storeName() {
		if _, err := s.windowStore(store); err != nil {
			return s.unknownStore(store)
		}
	}
	p, err := s.cfg.Router.PartitionOf([]byte(key))
	if err != nil {
		return unavailable("starting", "%v; retry shortly", err)
	}
	m, ok := s.owner(p)
	if !ok {
		s.refresh()
		return unavailable("moving", "partition %d has no known owner right now; retry shortly", p)
	}
	return c.JSON(http.StatusOK, map[string]any{"key": key, "partition": p, "owner": m.Name, "url": m.URL})
}

// storeName is the store this instance serves.
func (s *Server) storeName() string { return s.cfg.Store }

// stores lists the stores: the count store with its partitions here,
// then the windowed stores.
func (s *Server) stores(c echo.Context) error {
	type storeBody struct {
		Name       string              `json:"name"`
		Changelog  string              `json:"changelog"`
		Partitions []abacus.TaskStatus `json:"partitions"`
	}
	tasks := []abacus.TaskStatus{}
	if s.cfg.Health != nil {
		tasks = append(tasks, s.cfg.Health.Tasks()...)
	}
	stores := []any{storeBody{Name: s.cfg.Store, Changelog: s.cfg.ChangelogTopic, Partitions: tasks}}
	for _, ws := range s.cfg.WindowStores {
		stores = append(stores, windowStoreBody(ws))
	}
	return c.JSON(http.StatusOK, map[string]any{"stores": stores})
}

// clusterView is the body of /api/v1/cluster.
type clusterView struct {
	Self        string          `json:"self"`
	Partitions  int32           `json:"partitions"`
	Members     []abacus.Member `json:"members"`
	Owners      []owner         `json:"owners"`
	RefreshedAt string          `json:"refreshed_at"`
	AgeSeconds  float64         `json:"age_seconds"`
}

type owner struct {
	Partition int32  `json:"partition"`
	Member    string `json:"member"`
	URL       string `json:"url"`
}

func (s *Server) cluster(c echo.Context) error {
	members, refreshed, n := s.cfg.Router.Members()
	// A copy: the router's view is shared with other readers.
	v := clusterView{Self: s.cfg.Instance, Partitions: n, Members: append([]abacus.Member{}, members...), Owners: []owner{}}
	for i := range v.Members {
		if v.Members[i].Standbys == nil {
			v.Members[i].Standbys = []int32{}
		}
	}
	for p := range n {
		if m, ok := s.owner(p); ok {
			v.Owners = append(v.Owners, owner{Partition: p, Member: m.Name, URL: m.URL})
		}
	}
	v.RefreshedAt, v.AgeSeconds = viewAge(refreshed)
	return c.JSON(http.StatusOK, v)
}

// scanPage is the body of a scan.
type scanPage struct {
	Items      []Item `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
	// Partitions is set on local answers: what this instance covered.
	Partitions []int32 `json:"partitions,omitempty"`
	// Copies is set on local answers of a bounded scan (?max_lag): every
	// copy of a partition this instance holds, fresh enough or not.
	Copies []PartitionCopy `json:"copies,omitempty"`
	// Lag and Stale answer a bounded scan: the largest lag of the copies
	// the page was read from, and whether any of them is stale.
	Lag   *int64 `json:"lag,omitempty"`
	Stale *bool  `json:"stale,omitempty"`
}

const (
	defaultScanLimit = 100
	maxScanLimit     = 1000
)

func (s *Server) emptyKey(echo.Context) error {
	return fail(http.StatusBadRequest, "bad_key", "key must not be empty")
}

// scanKeys pages through keys in byte order across every owner: each owner
// returns its first limit+1 keys past the cursor, and the merge keeps the
// first limit, so no key is skipped or repeated between pages.
func (s *Server) scanKeys(c echo.Context) error {
	q, err := s.parseScan(c)
	if err != nil {
		return err
	}
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	store := c.Param("store")
	maxLag, bounded, err := maxLagParam(c)
	if err != nil {
		return err
	}
	if !bounded {
		maxLag = -1
	}
	limit := q.Limit
	if local || forwarded(c) {
		if !forwarded(c) {
			q.Limit = limit + 1 // one more tells whether a next page exists
		}
		page, err := s.localPage(store, q, maxLag)
		if err != nil {
			return err
		}
		if !forwarded(c) {
			s.cutPage(&page, limit)
		}
		return s.answerPage(c, page)
	}
	if store != s.storeName() {
		return s.unknownStore(store)
	}
	q.Limit = limit + 1
	ctx, auth := c.Request().Context(), c.Request().Header.Get("Authorization")
	var page scanPage
	if bounded {
		page, err = s.scanAllCopies(ctx, store, q, maxLag, auth)
	} else {
		page.Items, err = s.scanAll(ctx, store, q, auth)
	}
	if err != nil {
		return err
	}
	s.cutPage(&page, limit)
	return s.answerPage(c, page)
}

// localPage is this member's own page of a scan, of its active tasks, or
// with a maxLag of 0 or more of its copies (the bounded scan).
func (s *Server) localPage(store string, q ScanQuery, maxLag int64) (scanPage, error) {
	var page scanPage
	var err error
	if maxLag >= 0 {
		page.Items, page.Copies, err = s.cfg.Counts.ScanCopies(store, q, maxLag)
	} else {
		page.Items, page.Partitions, err = s.cfg.Counts.Scan(store, q)
	}
	switch {
	case errors.Is(err, abacus.ErrUnknownStore):
		return page, s.unknownStore(store)
	case err != nil:
		return page, fmt.Errorf("scan: %w", err)
	}
	if page.Items == nil {
		page.Items = []Item{}
	}
	if maxLag >= 0 {
		var lag int64
		stale := false
		for _, cp := range page.Copies {
			if cp.Lag <= maxLag {
				page.Partitions = append(page.Partitions, cp.Partition)
				lag, stale = max(lag, cp.Lag), stale || cp.Stale
			}
		}
		page.Lag, page.Stale = &lag, &stale
	}
	if page.Partitions == nil {
		page.Partitions = []int32{}
	}
	return page, nil
}

// answerPage sends a page, with the headers of a bounded scan's.
func (s *Server) answerPage(c echo.Context, page scanPage) error {
	if page.Lag != nil && page.Stale != nil {
		h := c.Response().Header()
		h.Set(LagHeader, strconv.FormatInt(*page.Lag, 10))
		h.Set(StaleHeader, strconv.FormatBool(*page.Stale))
	}
	return c.JSON(http.StatusOK, page)
}

// cutPage keeps the first limit items of a page that was read with one
// more, which tells that a next page exists: the cursor points past the
// last item kept.
func (s *Server) cutPage(page *scanPage, limit int) {
	page.Items, page.NextCursor = cutItems(page.Items, limit, func(it Item) string { return encodeCursor(s.cfg.ScanSecret, it.Key) })
}

// cutItems keeps the first limit items of a page read with one more; when
// there was one more, next makes the cursor of the last item kept. Key and
// window scans cut their pages with it.
func cutItems[T any](items []T, limit int, next func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, next(items[limit-1])
}

// scanAll asks every member for its part and merges the answers; an answer
// that does not cover every partition is a 503, never a partial page.
func (s *Server) scanAll(ctx context.Context, store string, q ScanQuery, authorization string) ([]Item, error) {
	members, _, n := s.cfg.Router.Members()
	parts, errs := s.askEveryMember(ctx, members, store, q, -1, authorization)
	items := make([][]Item, len(parts))
	covered := make([][]int32, len(parts))
	for i, p := range parts {
		items[i], covered[i] = p.Items, p.Partitions
	}
	return mergeParts(s, members, n, items, covered, errs, func(a, b Item) int { return strings.Compare(a.Key, b.Key) }, q.Limit)
}

// mergeParts merges the members' parts of a scan, given in the order of
// members with the partitions each covered and its error, into the first
// limit items in the order of cmp, one of each run of equal items (a
// partition answered twice while it moves). A member that failed, or a
// partition of the n that no part covers, is a 503, never a partial page.
// Key and window scans merge with it.
func mergeParts[T any](s *Server, members []abacus.Member, n int32, items [][]T, covered [][]int32, errs []error, cmp func(a, b T) int, limit int) ([]T, error) {
	seen := map[int32]bool{}
	var merged []T
	for i := range members {
		if errs[i] != nil {
			s.refresh()
			return nil, unavailable("owner_unreachable", "member %s did not answer the scan: %v; retry shortly", members[i].Name, errs[i])
		}
		for _, id := range covered[i] {
			seen[id] = true
		}
		merged = append(merged, items[i]...)
	}
	for id := range n {
		if !seen[id] {
			s.refresh()
			return nil, unavailable("incomplete", "partition %d is restoring or moving; retry shortly", id)
		}
	}
	if n == 0 {
		return nil, unavailable("starting", "the partition count is not known yet; retry shortly")
	}
	slices.SortFunc(merged, cmp)
	merged = slices.CompactFunc(merged, func(a, b T) bool { return cmp(a, b) == 0 })
	if len(merged) > limit {
		merged = merged[:limit]
	}
	if merged == nil {
		merged = []T{} // "items": [], not null
	}
	return merged, nil
}

// askEveryMember asks every member, this one included, for its local
// page of a scan (with a maxLag of 0 or more, of the bounded scan), all at
// once, and returns their pages and errors in the order of members.
func (s *Server) askEveryMember(ctx context.Context, members []abacus.Member, store string, q ScanQuery, maxLag int64, authorization string) ([]scanPage, []error) {
	return fanOut(s, members,
		func() (scanPage, error) { return s.localPage(store, q, maxLag) },
		func(m abacus.Member) (scanPage, error) { return s.scanRemote(ctx, m, store, q, maxLag, authorization) })
}

// fanOut asks every member, all at once, for its part: this member through
// local, the others through remote; it returns their parts and errors in
// the order of members. Key and window scans fan out with it.
func fanOut[P any](s *Server, members []abacus.Member, local func() (P, error), remote func(abacus.Member) (P, error)) ([]P, []error) {
	parts := make([]P, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			if m.Name == s.cfg.Instance {
				parts[i], errs[i] = local()
			} else {
				parts[i], errs[i] = remote(m)
			}
		})
	}
	wg.Wait()
	return parts, errs
}

// scanRemote asks member m for its local page of the scan; with a maxLag
// of 0 or more, of the bounded scan.
func (s *Server) scanRemote(ctx context.Context, m abacus.Member, store string, q ScanQuery, maxLag int64, authorization string) (scanPage, error) {
	v := url.Values{"local": {"true"}, "limit": {strconv.Itoa(q.Limit)}}
	if maxLag >= 0 {
		v.Set("max_lag", strconv.FormatInt(maxLag, 10))
	}
	for k, val := range map[string]string{"prefix": q.Prefix, "from": q.From, "to": q.To} {
		if val != "" {
			v.Set(k, val)
		}
	}
	noteForward(ctx, m.Name)
	return getPage[scanPage](ctx, s, m.URL+"/api/v1/stores/"+url.PathEscape(store)+"/keys?"+v.Encode(), authorization)
}

// getPage asks another member for its local page of a scan at target and
// reads it; an answer other than 200 is an error.
func getPage[P any](ctx context.Context, s *Server, target, authorization string) (P, error) {
	var page P
	resp, err := s.get(ctx, target, authorization)
	if err != nil {
		return page, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return page, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return page, fmt.Errorf("decode scan page: %w", err)
	}
	return page, nil
}
