package httpapi

import (
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// AccessLog writes one line per request when it ends: method, route
// pattern (never the raw path or query), status, duration, request id,
// app_id and, for a failure, the error code and its cause. Headers and
// bodies are never logged, so neither are keys nor secrets. 5xx answers log
// at error level, the others at info. It must run inside RequestID; nested
// inside another AccessLog, only the outer one writes the line.
func AccessLog(log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if i := infoFrom(r.Context()); i != nil {
				if i.logged {
					next.ServeHTTP(w, r)
					return
				}
				i.logged = true
			}
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			fields := []zap.Field{
				zap.String("method", r.Method),
				zap.String("route", "unmatched"),
				zap.Int("status", status),
				zap.Duration("duration", time.Since(start)),
				zap.Int64("bytes", rec.bytes),
			}
			level := zapcore.InfoLevel
			if status >= 500 {
				level = zapcore.ErrorLevel
			}
			if i := infoFrom(r.Context()); i != nil {
				fields = append(fields, zap.String("request_id", i.id))
				if i.route != "" {
					fields[1] = zap.String("route", i.route)
				}
				if i.appID != "" {
					fields = append(fields, zap.String("app_id", i.appID))
				}
				if i.err != nil {
					fields = append(fields, zap.String("error_code", i.err.Code))
					if i.err.Err != nil {
						fields = append(fields, zap.Error(i.err.Err))
					}
				}
			}
			if ce := log.Check(level, "request"); ce != nil {
				ce.Write(fields...)
			}
		})
	}
}

// statusRecorder remembers the status and size of a response. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// written reports whether the response has started.
func (s *statusRecorder) written() bool { return s.status != 0 }
