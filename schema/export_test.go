package schema

import (
	"context"
	"database/sql"
)

// OpenProvider is openProvider, for the migration tests that step through
// versions.
var OpenProvider = openProvider

// SwapIndexesConcurrently runs migration 12's Up (partial true) or Down
// as on an outbox too large to rebuild in one transaction.
func SwapIndexesConcurrently(ctx context.Context, db *sql.DB, partial bool) error {
	defs := fullIndexes
	if partial {
		defs = partialIndexes
	}
	return swapIndexes(ctx, db, defs, 0)
}
