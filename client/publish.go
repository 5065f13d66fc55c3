package client

import (
	"context"
	"encoding/json"
	"errors"
)

// PublishResult is the answer to Publish.
type PublishResult struct {
	// ID is the event's id.
	ID string `json:"id"`
	// Duplicate is true when an event with the same source and id had
	// already been published: nothing was published this time.
	Duplicate bool `json:"duplicate"`
}

// Publish sends one CloudEvent, as JSON, to POST /v1/events (scope
// publish). It returns once Kafka acknowledged the event. Retrying is safe:
// the server publishes one event per source and id, so a 503 or a lost
// answer is retried (as Options say) without a duplicate. An invalid event
// comes back as an *APIError whose Violations list every problem.
func (c *Client) Publish(ctx context.Context, event []byte) (PublishResult, error) {
	if !json.Valid(event) {
		return PublishResult{}, opError("publish", errors.New("the event is not JSON"))
	}
	var out PublishResult
	if err := c.postJSON(ctx, "/v1/events", c.opts.Timeout, event, maxCheckResponse, &out); err != nil {
		return PublishResult{}, opError("publish", err)
	}
	return out, nil
}
