package schemas

import _ "embed" // for OpenAPI

// OpenAPI is the OpenAPI 3.1 description of the HTTP API (openapi.yaml, in
// YAML), the machine-readable form of docs/api.md. internal/openapitest
// validates requests and responses against it in tests.
//
//go:embed openapi.yaml
var OpenAPI []byte
