package endpoints

import _ "embed"

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the API's OpenAPI 3.1 document (YAML). `relay serve`
// serves it at /v1/openapi.yaml.
func OpenAPI() []byte { return openapiYAML }
