package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/window"
	"github.com/labstack/echo/v4"
)

// Windowed stores: per key, windows [start, end) in epoch milliseconds,
// each with a count. A key's windows are answered as its count is, by the
// owner of its partition (forwarded there once); a scan of windows pages
// across every member as a key scan does, with a cursor that names the
// last window of a page.

// Window is one window of a key and its count; times in epoch milliseconds.
type Window struct {
	Key   string `json:"key"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Value int64  `json:"value"`
}

// WindowScanQuery bounds a windows scan: keys with Prefix in [From, To)
// (empty To: no bound), windows whose start lies in [StartFrom, StartTo)
// (StartTo 0: no bound), after the window After (nil: from the first; a
// cursor), at most Limit.
type WindowScanQuery struct {
	Prefix, From, To   string
	StartFrom, StartTo int64
	After              *Window
	Limit              int
}

// Windows answers from this member's windowed stores; methods may be
// called concurrently.
type Windows interface {
	// GetWindows returns key's committed windows in the windowed store
	// whose start lies in [from, to) (to is math.MaxInt64 for no bound),
	// ascending by start. It fails with abacus.ErrUnknownStore when store
	// names no windowed store, and with abacus's errors as Counts.Get does
	// (ErrNotOwned, ErrRestoring, ErrUnconfirmed, ErrHandingOver) when
	// this member cannot answer for the key's partition.
	GetWindows(store string, key []byte, from, to int64) ([]Window, error)
	// ScanWindows returns up to q.Limit windows in (key, start, end) order
	// from the active tasks here, and the partitions the answer covers (as
	// Counts.Scan).
	ScanWindows(store string, q WindowScanQuery) (items []Window, covered []int32, err error)
}

// WindowStore describes a windowed store for /stores and the topology.
type WindowStore struct {
	Spec           window.Spec
	ChangelogTopic string
}

// windowStoreEntry is a windowed store's entry in /stores; durations are
// Go's ("5s", "1h0m0s").
type windowStoreEntry struct {
	Name string      `json:"name"`
	Type window.Kind `json:"type"`
	Size string      `json:"size"`
	// Advance is a time window's (a tumbling window's is its size); a
	// session has none.
	Advance        string      `json:"advance,omitempty"`
	Grace          string      `json:"grace"`
	Retention      string      `json:"retention"`
	Emit           window.Emit `json:"emit"`
	OutputTopic    string      `json:"output_topic"`
	ChangelogTopic string      `json:"changelog_topic"`
}

func windowStoreBody(ws WindowStore) windowStoreEntry {
	sp := ws.Spec
	e := windowStoreEntry{Name: sp.Store, Type: sp.Kind, Size: sp.Size.String(), Grace: sp.Grace.String(), Retention: sp.Retention.String(),
		Emit: sp.Emit, OutputTopic: sp.OutputTopic, ChangelogTopic: ws.ChangelogTopic}
	switch sp.Kind {
	case window.Hopping:
		e.Advance = sp.Advance.String()
	case window.Tumbling:
		e.Advance = sp.Size.String()
	}
	return e
}

// windowTopology adds each windowed store to t: a processor the source
// feeds, the store with its changelog, and its output topic as a sink.
func (s *Server) windowTopology(t Topology) Topology {
	// Copies: Operations may hand every caller the same slices.
	t.Processors, t.Stores, t.Sinks = slices.Clone(t.Processors), slices.Clone(t.Stores), slices.Clone(t.Sinks)
	for _, ws := range s.cfg.WindowStores {
		sp := ws.Spec
		shape := fmt.Sprintf("size %s", sp.Size)
		switch sp.Kind {
		case window.Hopping:
			shape += fmt.Sprintf(", advance %s", sp.Advance)
		case window.Session:
			shape = fmt.Sprintf("inactivity gap %s", sp.Size)
		}
		t.Processors = append(t.Processors, TopologyNode{Name: "count-by-window-" + sp.Store,
			Description: fmt.Sprintf("adds one to the count of each %s window (%s, grace %s) of the record key that the record's timestamp falls in, in store %s", sp.Kind, shape, sp.Grace, sp.Store)})
		t.Stores = append(t.Stores, TopologyNode{Name: sp.Store, Changelog: ws.ChangelogTopic,
			Description: fmt.Sprintf("per-partition Badger store of the %s windows of each key and their counts, kept %s past their end, backed by its compacted changelog", sp.Kind, sp.Retention)})
		emit := "every new count of a window of store " + sp.Store
		if sp.Emit == window.EmitFinal {
			emit = "the final count of each window of store " + sp.Store + ", once, when the window closes"
		}
		t.Sinks = append(t.Sinks, TopologyNode{Name: "output-" + sp.Store, Topic: sp.OutputTopic, Description: emit})
	}
	return t
}

// windowStore is the windowed store named name, or a 404 unknown_store
// that, for the count store's name, says it is not a windowed store.
func (s *Server) windowStore(name string) (WindowStore, error) {
	for _, ws := range s.cfg.WindowStores {
		if ws.Spec.Store == name {
			return ws, nil
		}
	}
	if name == s.storeName() {
		return WindowStore{}, fail(http.StatusNotFound, "unknown_store", "store %q is the count store, not a windowed store: its counts are under /api/v1/stores/%s/keys", name, name)
	}
	return WindowStore{}, fail(http.StatusNotFound, "unknown_store", "no windowed store named %q", name)
}

// unknownStore is the 404 of the count store's routes for a store they do
// not serve; for a windowed store's name it says where its windows are.
func (s *Server) unknownStore(name string) error {
	if _, err := s.windowStore(name); err == nil {
		return fail(http.StatusNotFound, "unknown_store", "store %q is a windowed store, not the count store: its windows are under /api/v1/stores/%s/windows", name, name)
	}
	return fail(http.StatusNotFound, "unknown_store", "no store named %q", name)
}

// windowTime reads the time bound named name: epoch milliseconds or an
// RFC 3339 time; given is false when the parameter is absent.
func windowTime(params url.Values, name string) (ms int64, given bool, err error) {
	v := params.Get(name)
	if v == "" {
		return 0, false, nil
	}
	ms, err = parseWindowTime(v)
	if err != nil {
		return 0, false, fail(http.StatusBadRequest, "bad_parameter", "%s must be epoch milliseconds, 0 or more, or an RFC 3339 time such as 2024-05-01T12:00:00Z, not %q", name, v)
	}
	return ms, true, nil
}

var errBeforeEpoch = errors.New("before the epoch")

// parseWindowTime reads epoch milliseconds, or an RFC 3339 time rounded up
// to the next whole millisecond: window starts are whole milliseconds, so
// a start lies at or after the time, or before it, exactly when it does so
// for the rounded time (TestParseWindowTime, FuzzWindowTime). Times before
// the epoch are refused: no window starts there.
func parseWindowTime(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, errBeforeEpoch
		}
		return n, nil
	}
	// An offset's "+" that the client did not percent-encode arrives as a
	// space (url.ParseQuery reads "+" so), and no RFC 3339 time holds one.
	t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
	if err != nil {
		return 0, err
	}
	ms := t.UnixMilli() // the floor, also before the epoch
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	if ms < 0 {
		return 0, errBeforeEpoch
	}
	return ms, nil
}

// startRange reads from and to, the bounds [from, to) of the windows'
// starts: from 0 and to math.MaxInt64 when absent (bounded is false).
func startRange(params url.Values) (from, to int64, bounded bool, err error) {
	if from, _, err = windowTime(params, "from"); err != nil {
		return 0, 0, false, err
	}
	if to, bounded, err = windowTime(params, "to"); err != nil {
		return 0, 0, false, err
	}
	if !bounded {
		to = math.MaxInt64
	}
	if from > to {
		return 0, 0, false, fail(http.StatusBadRequest, "bad_parameter", "from (%d) must not be after to (%d)", from, to)
	}
	return from, to, bounded, nil
}

// keyWindows is the body of a key's windows.
type keyWindows struct {
	Key       string        `json:"key"`
	Partition int32         `json:"partition"`
	ServedBy  string        `json:"served_by"`
	Windows   []windowCount `json:"windows"`
}

// windowCount is one window of keyWindows.
type windowCount struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Value int64 `json:"value"`
}

// partitionOf is key's partition, or a 503 while it is not known.
func (s *Server) partitionOf(key string) (int32, error) {
	if s.cfg.Router == nil {
		return 0, unavailable("starting", "no view of the group yet; retry shortly")
	}
	p, err := s.cfg.Router.PartitionOf([]byte(key))
	if err != nil {
		return 0, unavailable("starting", "%v; retry shortly", err)
	}
	return p, nil
}

// getKeyWindows answers a key's windows from here when this member owns
// the key's partition, and otherwise forwards the request once to the
// owner, as getKey does a count.
func (s *Server) getKeyWindows(c echo.Context) error {
	key, err := pathKey(c)
	if err != nil {
		return err
	}
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	params, err := parseQuery(c)
	if err != nil {
		return err
	}
	from, to, _, err := startRange(params)
	if err != nil {
		return err
	}
	store := c.Param("store")
	if _, err := s.windowStore(store); err != nil {
		return err
	}
	p, err := s.partitionOf(key)
	if err != nil {
		return err
	}
	ws, err := s.cfg.Windows.GetWindows(store, []byte(key), from, to)
	switch {
	case errors.Is(err, abacus.ErrUnknownStore):
		return fail(http.StatusNotFound, "unknown_store", "no windowed store named %q", store)
	case err != nil:
		return s.notAnswered(c, err, p, key, local, "get windows")
	}
	body := keyWindows{Key: key, Partition: p, ServedBy: s.cfg.Instance, Windows: make([]windowCount, len(ws))}
	for i, w := range ws {
		body.Windows[i] = windowCount{Start: w.Start, End: w.End, Value: w.Value}
	}
	return c.JSON(http.StatusOK, body)
}

// windowPage is the body of a scan of windows, shaped as a key scan's.
type windowPage struct {
	Items      []Window `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
	// Partitions is set on local answers: what this member covered.
	Partitions []int32 `json:"partitions,omitempty"`
}

// compareWindows is the order of a scan of windows: by key, start, end.
func compareWindows(a, b Window) int {
	return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
}

// parseWindowScan reads and checks a scan of windows' query parameters:
// those of a key scan, but the bounds of keys are from_key and to_key,
// from and to bound the starts as for a key's windows, and the cursor is
// a window's. none is true for an empty range of starts.
func (s *Server) parseWindowScan(c echo.Context) (q WindowScanQuery, none bool, err error) {
	params, err := parseQuery(c)
	if err != nil {
		return q, false, err
	}
	keys, err := scanParams(c, params, "from_key", "to_key")
	if err != nil {
		return q, false, err
	}
	from, to, bounded, err := startRange(params)
	if err != nil {
		return q, false, err
	}
	q = WindowScanQuery{Prefix: keys.Prefix, From: keys.From, To: keys.To, StartFrom: from, Limit: keys.Limit}
	if bounded {
		q.StartTo = to // 0 only with from 0, an empty range, answered as none
	}
	if v := params.Get("cursor"); v != "" {
		after, err := decodeWindowCursor(s.cfg.ScanSecret, v)
		if err != nil {
			return q, false, badCursor(err)
		}
		q.After = &after
	}
	return q, bounded && from == to, nil
}

// scanWindows pages through the windows of every key in (key, start,
// end) order across every member, as scanKeys pages through keys: each
// member returns its first limit+1 windows past the cursor, the merge
// keeps the first limit, and the cursor names the last window kept, so
// no window is skipped or repeated between pages
// (TestWindowScanPagesAcrossMembers).
func (s *Server) scanWindows(c echo.Context) error {
	q, none, err := s.parseWindowScan(c)
	if err != nil {
		return err
	}
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	store := c.Param("store")
	if _, err := s.windowStore(store); err != nil {
		return err
	}
	if none {
		return c.JSON(http.StatusOK, windowPage{Items: []Window{}})
	}
	limit := q.Limit
	if local || forwarded(c) {
		if !forwarded(c) {
			q.Limit = limit + 1 // one more tells whether a next page exists
		}
		page, err := s.localWindowPage(store, q)
		if err != nil {
			return err
		}
		if !forwarded(c) {
			s.cutWindowPage(&page, limit)
		}
		return c.JSON(http.StatusOK, page)
	}
	if s.cfg.Router == nil {
		return unavailable("starting", "no view of the group yet; retry shortly")
	}
	q.Limit = limit + 1
	ctx, auth := c.Request().Context(), c.Request().Header.Get("Authorization")
	members, _, n := s.cfg.Router.Members()
	parts, errs := fanOut(s, members,
		func() (windowPage, error) { return s.localWindowPage(store, q) },
		func(m abacus.Member) (windowPage, error) { return s.scanWindowsRemote(ctx, m, store, q, auth) })
	items := make([][]Window, len(parts))
	covered := make([][]int32, len(parts))
	for i, p := range parts {
		items[i], covered[i] = p.Items, p.Partitions
	}
	merged, err := mergeParts(s, members, n, items, covered, errs, compareWindows, q.Limit)
	if err != nil {
		return err
	}
	page := windowPage{Items: merged}
	s.cutWindowPage(&page, limit)
	return c.JSON(http.StatusOK, page)
}

// cutWindowPage is cutPage for windows.
func (s *Server) cutWindowPage(page *windowPage, limit int) {
	page.Items, page.NextCursor = cutItems(page.Items, limit, func(w Window) string { return encodeWindowCursor(s.cfg.ScanSecret, w) })
}

// localWindowPage is this member's own page of a scan of windows, of its
// active tasks.
func (s *Server) localWindowPage(store string, q WindowScanQuery) (windowPage, error) {
	var page windowPage
	var err error
	page.Items, page.Partitions, err = s.cfg.Windows.ScanWindows(store, q)
	switch {
	case errors.Is(err, abacus.ErrUnknownStore):
		return page, fail(http.StatusNotFound, "unknown_store", "no windowed store named %q", store)
	case err != nil:
		return page, fmt.Errorf("scan windows: %w", err)
	}
	if page.Items == nil {
		page.Items = []Window{}
	}
	if page.Partitions == nil {
		page.Partitions = []int32{}
	}
	return page, nil
}

// scanWindowsRemote asks member m for its local page of a scan of
// windows; the window to resume after goes as a cursor, which every
// member can read.
func (s *Server) scanWindowsRemote(ctx context.Context, m abacus.Member, store string, q WindowScanQuery, authorization string) (windowPage, error) {
	v := url.Values{"local": {"true"}, "limit": {strconv.Itoa(q.Limit)}}
	for k, val := range map[string]string{"prefix": q.Prefix, "from_key": q.From, "to_key": q.To} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.StartFrom > 0 {
		v.Set("from", strconv.FormatInt(q.StartFrom, 10))
	}
	if q.StartTo > 0 {
		v.Set("to", strconv.FormatInt(q.StartTo, 10))
	}
	if q.After != nil {
		v.Set("cursor", encodeWindowCursor(s.cfg.ScanSecret, *q.After))
	}
	noteForward(ctx, m.Name)
	return getPage[windowPage](ctx, s, m.URL+"/api/v1/stores/"+url.PathEscape(store)+"/windows?"+v.Encode(), authorization)
}
