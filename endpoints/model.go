package endpoints

import (
	"time"

	"github.com/svix/svix-webhooks/go/models"
)

// Endpoint is a webhook endpoint as the API answers it.
type Endpoint struct {
	// ID is Svix's endpoint id ("ep_...").
	ID  string `json:"id"`
	URL string `json:"url"`
	// EventTypes are the event types delivered to the endpoint; null for
	// an endpoint made in Svix without a filter (it receives every type).
	EventTypes  []string  `json:"event_types"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	// Secret is the signing secret ("whsec_..."), only in the answer to a
	// create; GET /v1/webhook-endpoints/{id}/secret reads it later.
	Secret string `json:"secret,omitempty"`
}

// List is one page of endpoints.
type List struct {
	Data    []Endpoint `json:"data"`
	HasMore bool       `json:"has_more"`
	// NextCursor fetches the next page (?cursor=); null on the last page.
	NextCursor *string `json:"next_cursor"`
}

// Deleted answers a delete.
type Deleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// Secret is an endpoint's signing secret.
type Secret struct {
	Secret string `json:"secret"`
}

// CreateRequest is the body of POST /v1/webhook-endpoints.
type CreateRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description,omitempty"`
}

func endpointOf(out models.EndpointOut) Endpoint {
	return Endpoint{
		ID:          out.Id,
		URL:         out.Url,
		EventTypes:  out.FilterTypes,
		Description: out.Description,
		CreatedAt:   out.CreatedAt.UTC(),
	}
}
