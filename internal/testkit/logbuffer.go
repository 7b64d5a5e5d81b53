package testkit

import (
	"bytes"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogBuffer is a bytes.Buffer that goroutines under test write to while
// the test reads it: a zap sink, or a subprocess's stdout and stderr.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a zap logger writing JSON lines at debug level, with the
// production encoder's keys, to the LogBuffer it returns.
func Logger() (*zap.Logger, *LogBuffer) {
	logs := &LogBuffer{}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zapcore.DebugLevel)
	return zap.New(core), logs
}
