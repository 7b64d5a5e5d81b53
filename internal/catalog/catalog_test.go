package catalog_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/catalog"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	types, err := catalog.Load(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ty := range types {
		names = append(names, ty.Name)
		if ty.Description == "" {
			t.Errorf("%s has no description", ty.Name)
		}
	}
	var want []string
	for _, ty := range outbox.EventTypes {
		want = append(want, string(ty))
	}
	if !slices.Equal(names, want) {
		t.Errorf("catalog %v, want the outbox's types %v", names, want)
	}
	for _, ty := range types {
		if ty.Name == "asset.ready" && !slices.Equal(ty.PreviousStates, []string{"processing", "pending_payment"}) {
			t.Errorf("asset.ready previous states %v", ty.PreviousStates)
		}
	}
}

// TestSchemaExamples checks each schema's example against the rules the
// database enforces: the example's data is a row the outbox accepts.
func TestSchemaExamples(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	types, err := catalog.Load(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, ty := range types {
		t.Run(ty.Name, func(t *testing.T) {
			s := ty.Schema()
			examples, _ := s["examples"].([]any)
			if len(examples) != 1 {
				t.Fatalf("schema has %d examples, want 1", len(examples))
			}
			ex := examples[0].(map[string]any)
			if ex["type"] != ty.Name {
				t.Errorf("example type %v, want %s", ex["type"], ty.Name)
			}
			data, err := json.Marshal(ex["data"])
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Validate(outbox.Event{AppID: "acme", Type: outbox.EventType(ty.Name), Data: data}); err != nil {
				t.Errorf("the example's data is refused by the outbox: %v", err)
			}
			if _, err := pool.Exec(t.Context(), `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', $1, $2)`, ty.Name, data); err != nil {
				t.Errorf("the database refuses the example's data: %v", err)
			}
			props := s["properties"].(map[string]any)["data"].(map[string]any)
			required := props["required"].([]any)
			if (len(ty.PreviousStates) > 0) != slices.Contains(required, any("previous_state")) {
				t.Errorf("previous_state required = %v, the type has previous states %v", slices.Contains(required, any("previous_state")), ty.PreviousStates)
			}
		})
	}
}

func TestSync(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	fake := svixfake.NewStarted(t, svixfake.Config{})
	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{Token: svixfake.DefaultToken, ServerURL: fake.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client := sender.Client()
	types, err := catalog.Load(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}

	// Before the sync, Svix refuses an endpoint subscribing to our types.
	app := "acme"
	if _, err := client.Application.GetOrCreate(t.Context(), models.ApplicationIn{Name: app, Uid: &app}, nil); err != nil {
		t.Fatal(err)
	}
	endpoint := models.EndpointIn{Url: "https://example.com/hook", FilterTypes: []string{"asset.ready", "render.completed"}}
	if _, err := client.Endpoint.Create(t.Context(), app, endpoint, nil); !isStatus(err, 422) {
		t.Fatalf("endpoint for unregistered types: %v, want 422", err)
	}

	sync := func() map[catalog.Outcome]int {
		t.Helper()
		got := map[catalog.Outcome]int{}
		if err := catalog.Sync(t.Context(), client, types, func(_ catalog.EventType, o catalog.Outcome) { got[o]++ }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := sync(); got[catalog.Created] != 8 || got[catalog.Exists] != 0 {
		t.Errorf("first sync: %v, want 8 created", got)
	}
	if got := sync(); got[catalog.Created] != 0 || got[catalog.Exists] != 8 {
		t.Errorf("second sync: %v, want 8 already there (idempotent)", got)
	}

	registered := fake.EventTypes()
	if len(registered) != 8 {
		t.Fatalf("svix has %d event types, want 8", len(registered))
	}
	for _, et := range registered {
		if et.Description == "" || et.Schemas == nil || (*et.Schemas)[catalog.SchemaVersion] == nil || et.GroupName == nil {
			t.Errorf("event type %s registered without description, group or schema: %+v", et.Name, et)
		}
	}
	if _, err := client.Endpoint.Create(t.Context(), app, endpoint, nil); err != nil {
		t.Errorf("endpoint for the synced types: %v, want created", err)
	}
}

func isStatus(err error, status int) bool {
	var se *svix.Error
	return errors.As(err, &se) && se.Status() == status
}
