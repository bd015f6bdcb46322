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
	authToken = "console-test-token"
	authUser  = "ops"
	authPass  = "pa:ss wörd"
)

// A member with auth on (a token and basic credentials): the console
// shows no data before its user logs in, only the login form, while the
// API answers 401; a wrong token is refused with an error and still no
// data; the right token opens every page, the live view included (its
// EventSource opens with a ticket), and a windowed store's windows;
// logging out forgets the credentials; a user and password work as the
// token does.
func TestConsoleAuth(t *testing.T) {
	t.Parallel()
	bk := testkit.StartBroker(t, 2)
	pods := testkit.StartMembers(t, bk.Addr(), 1, map[string]string{
		"ABACUS_AUTH_TOKEN": authToken,
		"ABACUS_AUTH_BASIC": authUser + ":" + authPass,
		"ABACUS_WINDOWS":    "clicks-1h=tumbling,size=1h",
	})
	origin := pods[0].URL
	b := newBrowser(t)
	b.open(origin + "/#/overview")

	t.Run("NoDataBeforeLogin", func(t *testing.T) {
		b.t = t
		waitLogin(b)
		requireNoData(b)
		// Every call the page made to the API was refused.
		statuses := b.statuses(0)
		if len(statuses) == 0 {
			t.Fatal("the page made no API call")
		}
		for _, s := range statuses {
			if !strings.HasPrefix(s, "401 ") {
				t.Errorf("before login the API answered %s", s)
			}
		}
	})

	t.Run("WrongToken", func(t *testing.T) {
		b.t = t
		first := b.requestCount()
		login(b, "#login-token", "not-the-token")
		msg := waitJS(b, 10*time.Second, `document.querySelector('#login-status .notice.error')?.textContent ?? ''`, func(m string) error {
			if m == "" {
				return fmt.Errorf("no error shown")
			}
			return nil
		})
		if !strings.Contains(msg, "refused") {
			t.Errorf("a wrong token shows %q", msg)
		}
		requireNoData(b)
		for _, s := range b.statuses(first) {
			if !strings.HasPrefix(s, "401 ") {
				t.Errorf("with a wrong token the API answered %s", s)
			}
		}
		if kept, _ := eval[int](b, `sessionStorage.length`); kept != 0 {
			t.Errorf("sessionStorage keeps %d items after a refused login", kept)
		}
	})

	t.Run("Token", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('login-token').value = ''`))
		login(b, "#login-token", authToken)
		// Back on the page asked for, with data.
		waitLoaded(b, "overview")
		waitHealth(b, 20*time.Second, "abacus-0", "ok")

		// The live view, whose EventSource cannot send the token: it opens
		// with a ticket.
		b.route("#/live?key=auth-key")
		waitLive(b, "auth-key", 0)
		testkit.Produce(t, bk.Addr(), input, "murmur2_random", records("auth-key", 12))
		waitLive(b, "auth-key", 12)
		testkit.Produce(t, bk.Addr(), input, "murmur2_random", records("auth-key", 18))
		waitLive(b, "auth-key", 30)
		if !slices.ContainsFunc(b.statuses(0), func(s string) bool { return s == "201 POST /api/v1/tickets" }) {
			t.Errorf("the live view asked for no ticket: %v", b.statuses(0))
		}

		// A windowed store's windows of the key: 30 records in the last
		// hour, in one window or two.
		b.route("#/stores?store=clicks-1h&key=auth-key")
		type window struct {
			Value string `json:"value"`
		}
		waitJS(b, 20*time.Second, `[...document.querySelectorAll('#windows tbody tr')].map(tr => ({value: tr.dataset.value}))`,
			func(ws []window) error {
				sum := 0
				for _, w := range ws {
					v, _ := strconv.Atoi(w.Value)
					sum += v
				}
				if len(ws) == 0 || len(ws) > 2 || sum != 30 {
					return fmt.Errorf("the windows of auth-key show %v; want 30 records in one or two windows", ws)
				}
				return nil
			})
	})

	t.Run("Reconnect", func(t *testing.T) {
		b.t = t
		b.route("#/live?key=auth-key")
		waitLive(b, "auth-key", 30)
		first := b.requestCount()
		// The member serving the page and its stream dies; records come
		// while it is gone; it comes back.
		pods[0].Kill()
		testkit.Produce(t, bk.Addr(), input, "murmur2_random", records("auth-key", 20))
		pods[0].Restart()
		waitLive(b, "auth-key", 50)
		// The page reopened the stream with a fresh ticket, passing the
		// last value it had as last_event_id.
		var reopened []string
		for _, r := range b.requestsFrom(first) {
			if strings.Contains(r, "/subscribe?") {
				reopened = append(reopened, r)
			}
		}
		if !slices.ContainsFunc(reopened, func(u string) bool {
			return strings.Contains(u, "last_event_id=30") && strings.Contains(u, "ticket=")
		}) {
			t.Errorf("the page reopened its stream with %v; want a fresh ticket and last_event_id=30", reopened)
		}
		t.Logf("the page reopened its stream as %v", reopened)
		if tickets := slices.DeleteFunc(b.statuses(first), func(s string) bool { return s != "201 POST /api/v1/tickets" }); len(tickets) == 0 {
			t.Error("the page asked for no new ticket")
		}
	})

	t.Run("Logout", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Click(chromedp.CSS("#logout")))
		waitLogin(b)
		requireNoData(b)
		if kept, _ := eval[int](b, `sessionStorage.length`); kept != 0 {
			t.Errorf("sessionStorage keeps %d items after logout", kept)
		}
	})

	t.Run("UserAndPassword", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Click(chromedp.CSS(`#login input[value=basic]`)),
			chromedp.SendKeys(chromedp.CSS("#login-user"), authUser))
		login(b, "#login-password", authPass)
		b.route("#/overview")
		waitHealth(b, 20*time.Second, "abacus-0", "ok")
		b.checkProblems()
	})
}

// waitLogin waits until the console shows its login form.
func waitLogin(b *browser) {
	b.t.Helper()
	waitJS(b, 20*time.Second, `[document.getElementById('view').dataset.page, !!document.getElementById('login')]`, func(v []any) error {
		if v[0] != "login" || v[1] != true {
			return fmt.Errorf("the console shows page %v, login form %v", v[0], v[1])
		}
		return nil
	})
}

// login types secret into the field of the login form and submits it.
func login(b *browser, field, secret string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.CSS(field), secret),
		chromedp.Click(chromedp.CSS("#login button[type=submit]")))
}

// requireNoData fails the test when the page shows any data of the
// member: a member row, a partition, a table row of any page.
func requireNoData(b *browser) {
	b.t.Helper()
	if rows, err := eval[int](b, `document.querySelectorAll('#view tbody tr, #whoami .member').length`); err != nil || rows != 0 {
		b.t.Errorf("the page shows %d rows of data (%v)", rows, err)
	}
}
