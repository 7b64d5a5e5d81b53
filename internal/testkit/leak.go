package testkit

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs a package's tests, then fails them if goroutines are
// left behind (goleak), with opts added to the one exception every package
// on PostgreSQL needs: the health check of internal/pgtest's shared admin
// pool, which lives as long as the test process.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	opts = append([]goleak.Option{goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")}, opts...)
	goleak.VerifyTestMain(m, opts...)
}
