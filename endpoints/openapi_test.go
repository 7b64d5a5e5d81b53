package endpoints_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/catalog"
	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestOpenAPIDocument: the document is valid OpenAPI 3.1, describes
// exactly the handler's operations, and its event types are the catalog's.
// (Every other test checks each request and answer against it.)
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(endpoints.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("invalid document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %s, want 3.1", doc.OpenAPI)
	}
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	want := []string{
		"DELETE /v1/webhook-endpoints/{id}",
		"GET /v1/webhook-endpoints",
		"GET /v1/webhook-endpoints/{id}",
		"GET /v1/webhook-endpoints/{id}/secret",
		"POST /v1/webhook-endpoints",
		"POST /v1/webhook-endpoints/{id}/secret/rotate",
	}
	if !slices.Equal(ops, want) {
		t.Errorf("documented operations %v, want the handler's %v", ops, want)
	}

	types, err := catalog.Load(ctx(t), pgtest.Pool(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ty := range types {
		names = append(names, ty.Name)
	}
	var documented []string
	for _, v := range doc.Components.Schemas["EventType"].Value.Enum {
		documented = append(documented, v.(string))
	}
	sort.Strings(documented)
	if !slices.Equal(documented, names) {
		t.Errorf("documented event types %v, catalog %v", documented, names)
	}
}
