// Package live serves an account's outbox events to its own first-party
// browser pages as a Server-Sent Events stream (GET /v1/live), gap-free
// across reconnects, fed from the outbox itself so it keeps working while
// Svix or relay run is down.
//
// # What a client gets
//
// Each outbox row of the caller's account committed while the stream is
// open becomes one event:
//
//	id: 3f9c2a01b7e45d10-1842
//	event: asset.ready
//	data: {"type":"asset.ready","data":{"asset_id":"a1","entity_id":"e1","previous_state":"processing"},"created_at":"2026-12-02T09:00:00.123456Z"}
//
// data carries the webhook body (type and data, exactly as stored) plus
// created_at. ?types=a,b and ?asset_id= narrow the stream. A comment line
// is sent every Config.Heartbeat so proxies keep idle streams open.
//
// # Cursor
//
// An event's id is an opaque cursor: the database's epoch (table
// outbox_live) and the row's commit_seq, the position a sequencer step
// (package internal/sequencer, migration 00003) gives each row after it
// commits, under a lock, in the order rows become visible. Row ids are
// taken at INSERT and commit out of order, so "id > last" would lose rows;
// commit_seq does not: every number is above every number visible before
// it. The trade-off: rows are numbered within one sequencer step of their
// commit (a notification away, at most Config.PollInterval), and rows whose
// commits race within one step are ordered by id; a transaction left open
// elsewhere holds nothing back.
//
// A client resuming with Last-Event-ID (EventSource sends it when it
// reconnects) or ?last_event_id= first gets, in commit order, exactly its
// account's rows after the cursor (matching its filters), then live
// events: nothing twice, nothing missing. It gets "event: reset" instead
// (data {"type":"reset","data":{"reason":...}}), then live events, when
// that cannot be promised: the cursor is from another database (epoch),
// rows after it were pruned (outbox_live.pruned_through, kept by a delete
// trigger), it is ahead of the database (a restored backup), or more than
// Config.ReplayLimit rows follow it. A reset tells the page to refetch
// state from the product's read API. The stream's first frame moves
// Last-Event-ID to where it starts, so a reconnect before any event still
// resumes without a gap. A page that takes the cursor first (the session
// endpoint answers it, or Handler.CurrentCursor), then loads state, then
// opens the stream from that cursor misses nothing.
//
// # Authentication
//
// The product's backend mints a short-lived token for the signed-in
// user's account with Mint (a JWT, HS256, audience "relay-live", via
// golang-jwt/jwt/v5). A fetch-based client sends it as Authorization:
// Bearer. EventSource cannot set headers, so the page exchanges it once
// (POST /v1/live/session with the bearer token) for an HttpOnly, Secure,
// SameSite=Strict cookie scoped to /v1/live that expires with the token;
// or a backend that mounts the Handler itself sets that cookie with
// SetSessionCookie. Tokens never travel in URLs. A bad, expired or
// foreign-signed token gets 401 with the error envelope and
// WWW-Authenticate (EventSource then stops retrying), never a stream; a
// stream ends when its token expires, and the page refreshes its session
// and resumes from its cursor. CORS, with credentials, is answered for
// Config.AllowedOrigins only.
//
// # Scale
//
// One reader per process whatever the number of streams: the Handler
// LISTENs for outbox_sequenced (and, running its own sequencer, for
// outbox), queries the rows after the last one it saw, and fans them out
// from memory; notifications only wake it, the query is the truth, and a
// poll covers lost ones (Config.PollOnly polls alone, for PgBouncer's
// transaction mode). Each stream has a bounded queue (Config.Buffer): a
// stream that falls behind is cut off and resumes from its cursor, never
// slowing the others. Writes carry their own deadline
// (http.ResponseController), so idle streams outlive the server's
// timeouts. Config.MaxStreamsPerApp caps an account's streams (429).
// Close ends every stream at shutdown.
//
// # Why plain net/http
//
// SSE framing is a few lines (id, event, data, a blank line); what the
// stream needs around it (commit-ordered replay from PostgreSQL, per-write
// deadlines, bounded queues, heartbeats, token expiry) is not in
// tmaxmax/go-sse either (its replayers keep history in memory or need an
// adapter, and it has no heartbeat), so the library would add a
// dependency without removing code.
package live
