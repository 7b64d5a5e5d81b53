// Package dispatch drains the outbox into Svix.
//
// The relay numbers committed rows in commit order (commit_seq, from the
// sequencer), then claims only the head of each ordering key: the row with
// the lowest commit_seq among the key's undelivered rows. Claimed rows go
// to River in batch jobs whose args are row ids only. A batch job reads the
// rows it still owns (job_id), sends them concurrently with Message.Create,
// using a key derived from the row (Key) as both Svix's idempotency key and
// the message's eventId, so a retry, a crash or a second replica never
// makes Svix accept one row twice. It then records every outcome in one
// transaction, which also moves rows to retry into retry jobs and claims
// the next row of each key whose row ended (into itself while it is young,
// else into a new job):
//
//	2xx, or 409 on the eventId   delivered_at, svix_message_id
//	429                          retried after Retry-After; not an attempt
//	5xx, timeout, network        attempts, last_error; retried with capped backoff;
//	                             failed_at once MaxAge has passed since the row
//	                             was written or last replayed
//	401, 403                     attempts, last_error; retried; readiness false
//	other 4xx                    failed_at, last_error; kept until outbox_replay
//
// Producers take no lock. Several relays may run on one database: claims
// are guarded by row state, a transaction-level advisory lock orders
// admission against the outcome transactions, River runs maintenance on
// its elected leader only, and a row belongs to one job at a time.
package dispatch
