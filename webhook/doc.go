// Package webhook serves the event webhooks of mail providers, so that
// complaints, hard bounces and unsubscribes reach suppressd seconds after
// the provider learns of them instead of at the next batch import.
//
// NewHandler serves, under the api role's mux,
//
//	POST /hooks/sns                 Amazon SES notifications delivered by Amazon SNS
//	POST /hooks/sendgrid            SendGrid Event Webhook (Signed Event Webhook)
//	POST /hooks/mailgun             Mailgun webhooks
//	POST /hooks/postmark[/<secret>] Postmark webhooks (basic auth and/or a secret path segment)
//
// and only the providers whose credentials are configured: any other path
// is 404, so a provider is never served unauthenticated.
//
// One request flows the same way whatever its provider:
//
//	body (bounded) ──▶ authenticate ──▶ fresh? ──▶ replayed? ──▶ parse ──▶ opt-outs
//	                   (signature, cert,  (timestamp  (signature or       │
//	                    basic auth)        tolerance)  token seen)        ▼
//	    200 ◀── every opt-out published ◀── Publisher (Kafka acks) ◀── PublishLog: seen? skip
//	    503 ◀── any publish failed (the provider retries; what was published is skipped then)
//
// Each hard bounce, complaint and unsubscribe becomes one suppression.Event
// per recipient (types EventHardBounce, EventComplaint, EventUnsubscribe;
// origin system; source /hooks/<provider>; the provider's own event id, made
// per recipient where one notification names several). Everything else a
// provider reports (deliveries, opens, clicks, soft bounces) is acknowledged
// with 200 and dropped. A request is answered 2xx only once every opt-out in
// it was acknowledged by Kafka; a retried delivery publishes nothing twice
// (PublishLog).
//
// What each provider documents, and what this package follows:
//
//   - Amazon SNS message signatures, SignatureVersion 1 (SHA1withRSA) and 2
//     (SHA256withRSA), the string to sign per message type, the signing
//     certificate fetched over HTTPS from an SNS host:
//     https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html,
//     https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html,
//     https://docs.aws.amazon.com/sns/latest/dg/http-subscription-confirmation-json.html.
//     The SES content: https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
//     and https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html.
//   - SendGrid's Signed Event Webhook (ECDSA P-256 over timestamp + body):
//     https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features;
//     its events: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event.
//   - Mailgun's webhook signature (HMAC-SHA256 of timestamp + token):
//     https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks;
//     payloads: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads
//     and https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types.
//   - Postmark's basic HTTP authentication in the webhook URL:
//     https://postmarkapp.com/developer/webhooks/webhooks-overview; payloads:
//     https://postmarkapp.com/developer/webhooks/bounce-webhook,
//     https://postmarkapp.com/developer/webhooks/spam-complaint-webhook,
//     https://postmarkapp.com/developer/webhooks/subscription-change-webhook.
//
// Nothing raw about a person leaves this package in a log line, a metric
// label or an error message: logs carry the provider, the outcome and event
// ids, never an address, a body, a signature or a secret.
//
// docs/webhooks.md says how to configure each provider and suppressd.
package webhook
