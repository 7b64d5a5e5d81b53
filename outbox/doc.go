// Package outbox is the producer side of the relay: it writes webhook events
// into the outbox table in the caller's own transaction, so an event is
// committed exactly when the state change it announces is.
//
//	tx, _ := pool.Begin(ctx)
//	_, _ = tx.Exec(ctx, `UPDATE renders SET state = 'completed' WHERE id = $1`, renderID)
//	id, err := outbox.Emit(ctx, tx, outbox.RenderCompleted(accountID, renderID, assetID))
//	// ... tx.Commit(ctx): the relay delivers the event to Svix; a rollback emits nothing.
//
// Any language can do the same with plain SQL:
//
//	INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb) RETURNING id;
//
// The database refuses a bad row at INSERT with an error naming the field and
// the rule; Validate gives the same verdict in Go before a round trip, and
// Emit reports either as a *ValidationError.
//
// The package depends on pgx and the standard library only, so product
// services can import it without the relay's own dependencies.
package outbox
