package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/abacus-streams/abacus/internal/ticket"
	"github.com/labstack/echo/v4"
)

// A browser's EventSource cannot send an Authorization header, so with
// auth on a page could not open a subscription. It asks for a ticket
// instead (POST /api/v1/tickets, with its credentials) and opens the
// stream with ?ticket=. A ticket:
//
//   - opens a subscription (GET .../subscribe) and nothing else: anywhere
//     else it is not looked at, and the request is refused as one without
//     credentials (TestTicketOnALookup);
//   - is checked when the stream opens only: a stream outlives it;
//   - lasts TicketLifetime, and is signed with a key derived from the
//     credentials and the application id (package ticket), so any member
//     verifies it and a change of credentials revokes every ticket out;
//   - never leaves the member it was given to: what that member asks
//     other members for the stream (the owner's stream, the next owner's
//     as the key moves) carries the member's own credentials instead
//     (PeerAuthorization), and the ticket is dropped from the query
//     (TestTicketStreamForwardedToTheOwner).
//
// With auth off tickets are issued all the same, so that the console
// takes one path, and are ignored.

// PathTickets issues tickets.
const PathTickets = "/api/v1/tickets"

// TicketLifetime is how long a ticket may open a stream.
const TicketLifetime = 60 * time.Second

// purposeSubscribe is the purpose of the tickets that open subscriptions.
const purposeSubscribe = "subscribe"

// The query parameters of a subscription that are not the subscription's:
// the ticket it opens with, and the Last-Event-ID of a browser that
// reopens an EventSource with a new ticket (which cannot set the header).
const (
	paramTicket      = "ticket"
	paramLastEventID = "last_event_id"
)

// newTickets is the signer of the tickets of the configured credentials.
func newTickets(cfg Config) *ticket.Signer {
	return ticket.New(ticket.Key(cfg.ApplicationID, cfg.AuthToken, cfg.AuthBasic))
}

// ticketBody is the answer of POST /api/v1/tickets.
type ticketBody struct {
	Ticket    string `json:"ticket"`
	ExpiresAt string `json:"expires_at"`
}

func (s *Server) issueTicket(c echo.Context) error {
	expires := time.Now().Add(TicketLifetime).Truncate(time.Second)
	t, err := s.tickets.Issue(purposeSubscribe, expires)
	if err != nil {
		return fmt.Errorf("issue a ticket: %w", err)
	}
	// A credential: no cache keeps it.
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, ticketBody{Ticket: t, ExpiresAt: expires.UTC().Format(time.RFC3339)})
}

// openedWithTicket marks the context of a request a ticket let in.
type openedWithTicket struct{}

// admitTicket lets a subscription in on a valid ?ticket=, with ok true;
// it returns the refusal of a ticket that is not, and ok false when the
// request is not a subscription with a ticket.
func (s *Server) admitTicket(c echo.Context) (ok bool, refusal error) {
	req := c.Request()
	if c.Path() != PathSubscribe || req.Method != http.MethodGet {
		return false, nil
	}
	t := req.URL.Query().Get(paramTicket)
	if t == "" {
		return false, nil
	}
	if err := s.tickets.Verify(t, purposeSubscribe, time.Now()); err != nil {
		return false, fail(http.StatusUnauthorized, "unauthorized", "%v: ask POST %s for a new one", err, PathTickets)
	}
	c.SetRequest(req.WithContext(context.WithValue(req.Context(), openedWithTicket{}, true)))
	return true, nil
}

// authorizationFor is the Authorization header of the calls this member
// makes to others on behalf of req: req's own, or, for a stream a ticket
// opened, the member's own credentials (the ticket stays here).
func (s *Server) authorizationFor(req *http.Request) string {
	if opened, _ := req.Context().Value(openedWithTicket{}).(bool); opened {
		return PeerAuthorization(s.cfg.AuthToken, s.cfg.AuthBasic)
	}
	return req.Header.Get("Authorization")
}

// takeStreamParams moves ?last_event_id= into the Last-Event-ID header,
// unless the header is there (it wins), and drops it and ?ticket= from
// the request's query, so that what serves the stream here and what it
// asks of other members sees neither in the query.
func takeStreamParams(c echo.Context) error {
	params, err := parseQuery(c)
	if err != nil {
		return err
	}
	_, hasTicket := params[paramTicket]
	_, hasID := params[paramLastEventID]
	if !hasTicket && !hasID {
		return nil
	}
	req := c.Request().Clone(c.Request().Context())
	if id := params.Get(paramLastEventID); hasID && req.Header.Get("Last-Event-ID") == "" {
		req.Header.Set("Last-Event-ID", id)
	}
	params.Del(paramTicket)
	params.Del(paramLastEventID)
	req.URL.RawQuery = params.Encode()
	c.SetRequest(req)
	return nil
}
