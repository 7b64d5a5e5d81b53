package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// Token is the API token the dev Svix server accepts.
const Token = svixfake.DefaultToken

// Apps are the Svix applications (customer accounts) that get an endpoint
// on the demo's receiver. Rows for another app are accepted by the dev Svix
// server but delivered nowhere, as in Svix.
var Apps = []string{"acme", "initech"}

// deliveryRetrySchedule is the dev server's delay before each retry of a
// failed delivery: short, so the demo shows a retry within a second.
var deliveryRetrySchedule = []time.Duration{
	500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
}

// devSvix is the dev Svix server (svixfake in DevMode) and the receiver
// registered on it through the real Svix client.
type devSvix struct {
	fake   *svixfake.Server
	recv   *Receiver
	http   *http.Client
	client *svix.Svix

	mu   sync.Mutex
	msgs map[string]svixfake.Message // by Svix message id, filled on demand
	apps map[string]bool             // apps with an endpoint on the receiver

	unrouted chan svixfake.Message // accepted messages of apps without an endpoint
	cancel   context.CancelFunc
	watching sync.WaitGroup
}

type devSvixConfig struct {
	svixAddr, receiverAddr string
	faults                 map[string]Fault
	log                    *zap.Logger
	// noEndpoints leaves the endpoints to the caller (the demo makes them
	// through the endpoint API, then calls subscribed).
	noEndpoints bool
}

// startDevSvix starts the dev Svix server and the receiver and, unless
// cfg.noEndpoints, registers the event types, the apps and one endpoint
// per app (subscribed to every event type) with the Svix Go client, and
// hands each endpoint's secret to the receiver.
func startDevSvix(ctx context.Context, cfg devSvixConfig) (_ *devSvix, err error) {
	fake, err := svixfake.New(svixfake.Config{
		DevMode:               true,
		DeliveryRetrySchedule: deliveryRetrySchedule,
		DeliveryTimeout:       5 * time.Second,
		Logger:                cfg.log,
	})
	if err != nil {
		return nil, fmt.Errorf("dev svix server: %w", err)
	}
	if err := fake.Start(cfg.svixAddr); err != nil {
		_ = fake.Close()
		return nil, fmt.Errorf("dev svix server: %w", err)
	}
	recv, err := newReceiver(cfg.receiverAddr, cfg.faults)
	if err != nil {
		_ = fake.Close()
		return nil, err
	}
	watchCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &devSvix{
		fake:     fake,
		recv:     recv,
		http:     &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		msgs:     make(map[string]svixfake.Message),
		apps:     make(map[string]bool),
		unrouted: make(chan svixfake.Message, 64),
		cancel:   cancel,
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	u, _ := url.Parse(fake.URL())
	d.client, err = svix.New(Token, &svix.SvixOptions{ServerUrl: u, HTTPClient: d.http, RetrySchedule: &[]time.Duration{}})
	if err != nil {
		return nil, fmt.Errorf("svix client: %w", err)
	}
	if !cfg.noEndpoints {
		if err := d.register(ctx); err != nil {
			return nil, err
		}
	}
	d.watching.Go(func() { d.watchUnrouted(watchCtx) })
	return d, nil
}

// register creates the event types, then per app the application, an
// endpoint on the receiver and reads back its secret.
func (d *devSvix) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	types := make([]string, len(outbox.EventTypes))
	for i, t := range outbox.EventTypes {
		types[i] = string(t)
		_, err := d.client.EventType.Create(ctx, models.EventTypeIn{Name: types[i], Description: "relay outbox event " + types[i]}, nil)
		var se *svix.Error
		if err != nil && !(errors.As(err, &se) && se.Status() == http.StatusConflict) {
			return fmt.Errorf("create event type %s: %w", types[i], err)
		}
	}
	desc := "relay demo receiver"
	for _, app := range Apps {
		if _, err := d.client.Application.GetOrCreate(ctx, models.ApplicationIn{Name: app, Uid: &app}, nil); err != nil {
			return fmt.Errorf("create application %s: %w", app, err)
		}
		ep, err := d.client.Endpoint.Create(ctx, app, models.EndpointIn{Url: d.recv.URL(app), FilterTypes: types, Description: &desc}, nil)
		if err != nil {
			return fmt.Errorf("create endpoint of application %s: %w", app, err)
		}
		secret, err := d.client.Endpoint.GetSecret(ctx, app, ep.Id)
		if err != nil {
			return fmt.Errorf("read endpoint secret of application %s: %w", app, err)
		}
		if err := d.subscribed(app, secret.Key); err != nil {
			return err
		}
	}
	return nil
}

// subscribed tells the receiver app's endpoint secret, and the watcher
// that app's messages are delivered.
func (d *devSvix) subscribed(app, secret string) error {
	if err := d.recv.setSecret(app, secret); err != nil {
		return err
	}
	d.mu.Lock()
	d.apps[app] = true
	d.mu.Unlock()
	return nil
}

// URL is the dev Svix server's base URL, for SVIX_SERVER_URL.
func (d *devSvix) URL() string { return d.fake.URL() }

// message returns the accepted message with Svix id msgID in app.
func (d *devSvix) message(app, msgID string) (svixfake.Message, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.msgs[msgID]; ok {
		return m, true
	}
	for _, m := range d.fake.Messages(app) {
		d.msgs[m.ID] = m
	}
	m, ok := d.msgs[msgID]
	return m, ok
}

// watchUnrouted reports messages accepted for apps without an endpoint:
// they are delivered nowhere, which a user inserting rows by hand should be
// told.
func (d *devSvix) watchUnrouted(ctx context.Context) {
	seen := 0
	for {
		if err := d.fake.WaitFor(ctx, func(s *svixfake.Server) bool { return s.MessageCount() > seen }); err != nil {
			return
		}
		all := d.fake.AllMessages()
		for _, m := range all[min(seen, len(all)):] {
			d.mu.Lock()
			routed := d.apps[m.AppUID] || d.apps[m.AppID]
			d.mu.Unlock()
			if routed {
				continue
			}
			select {
			case d.unrouted <- m:
			case <-ctx.Done():
				return
			}
		}
		seen = len(all)
	}
}

// close stops the watcher, the dev Svix server (and its pending delivery
// retries), then the receiver.
func (d *devSvix) close() {
	d.cancel()
	d.watching.Wait()
	_ = d.fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.recv.Close(ctx)
	d.http.CloseIdleConnections()
}
