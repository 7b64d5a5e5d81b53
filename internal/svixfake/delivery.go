package svixfake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"go.uber.org/zap"
)

// deliveryTarget is an endpoint snapshot taken when the message was
// accepted, as Svix fixes a message's destinations at creation.
type deliveryTarget struct {
	endpointID string
	url        string
	wh         *svix.Webhook
	oldWhs     []*svix.Webhook // rotated-out secrets still in their grace period
}

type deliveryLog struct {
	mu       sync.Mutex
	attempts []Attempt
}

// Attempts returns every DevMode delivery attempt, in completion order.
func (s *Server) Attempts() []Attempt {
	s.deliveries.mu.Lock()
	defer s.deliveries.mu.Unlock()
	return append([]Attempt(nil), s.deliveries.attempts...)
}

// AttemptsFor returns the DevMode delivery attempts of one message.
func (s *Server) AttemptsFor(msgID string) []Attempt {
	s.deliveries.mu.Lock()
	defer s.deliveries.mu.Unlock()
	var out []Attempt
	for _, a := range s.deliveries.attempts {
		if a.MsgID == msgID {
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) recordAttempt(a Attempt) {
	s.deliveries.mu.Lock()
	s.deliveries.attempts = append(s.deliveries.attempts, a)
	s.deliveries.mu.Unlock()
	s.notify.broadcast()
}

// scheduleDeliveries starts one goroutine per target; Close stops and
// waits for them.
func (s *Server) scheduleDeliveries(m Message, targets []deliveryTarget) {
	for _, t := range targets {
		if !s.enter() {
			return
		}
		go func() {
			defer s.inflight.Done()
			s.deliver(m, t)
		}()
	}
}

// deliver sends m to t until a 2xx or the retry schedule runs out. An
// attempt cut off by Close is not recorded: shutdown is not a failure.
func (s *Server) deliver(m Message, t deliveryTarget) {
	schedule := s.cfg.DeliveryRetrySchedule
	for attempt := 1; ; attempt++ {
		a, err := s.attemptDelivery(m, t, attempt)
		if s.ctx.Err() != nil {
			return
		}
		s.recordAttempt(a)
		if a.Success() {
			return
		}
		s.log.Info("delivery attempt failed",
			zap.String("svix_msg_id", m.ID),
			zap.String("endpoint_id", t.endpointID),
			zap.Int("attempt", attempt),
			zap.Int("status", a.Status),
			zap.Error(err),
		)
		if attempt > len(schedule) {
			return
		}
		timer := time.NewTimer(schedule[attempt-1])
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			timer.Stop()
			return
		}
	}
}

func (s *Server) attemptDelivery(m Message, t deliveryTarget, attempt int) (Attempt, error) {
	a := Attempt{MsgID: m.ID, EndpointID: t.endpointID, URL: t.url, Attempt: attempt}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DeliveryTimeout)
	defer cancel()

	// Signed with the wall clock: receivers verify against theirs.
	now := time.Now()
	a.Time = now
	sig, err := t.wh.Sign(m.ID, now, m.Payload)
	if err != nil {
		a.Err = err.Error()
		return a, fmt.Errorf("sign delivery: %w", err)
	}
	for _, old := range t.oldWhs {
		// One signature per secret, space-separated, as Svix sends them.
		oldSig, err := old.Sign(m.ID, now, m.Payload)
		if err != nil {
			a.Err = err.Error()
			return a, fmt.Errorf("sign delivery: %w", err)
		}
		sig += " " + oldSig
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(m.Payload))
	if err != nil {
		a.Err = err.Error()
		return a, fmt.Errorf("build delivery request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Svix-Webhooks/1.0 (svixfake)")
	req.Header.Set("svix-id", m.ID)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)

	resp, err := s.client.Do(req)
	if err != nil {
		a.Err = err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			a.Err = fmt.Sprintf("timed out after %s", s.cfg.DeliveryTimeout)
		}
		return a, fmt.Errorf("deliver: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a.Status = resp.StatusCode
	if !a.Success() {
		return a, fmt.Errorf("deliver: endpoint answered %d", resp.StatusCode)
	}
	return a, nil
}
