package kafkaconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// The refusals of the real SASL_SSL listener are in cmd/suppressd
// (TestServeRefusesBadCredentials); here, that Explain touches nothing
// else and keeps the cause reachable.
func TestExplainOnlyRefusals(t *testing.T) {
	c := Config{Brokers: []string{"b1:9093", "b2:9093"}, SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: "s3cret-pw"}
	verify := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	tests := []struct {
		name string
		err  error
		want string // "" when err passes unchanged
	}{
		{"sasl", fmt.Errorf("kafka.(*Client).Metadata: %w", kafka.SASLAuthenticationFailed),
			"SUPPRESSD_KAFKA_SASL_USERNAME/SUPPRESSD_KAFKA_SASL_PASSWORD: authentication failed: the brokers (b1:9093,b2:9093) refused the SASL SCRAM-SHA-512 login"},
		{"mechanism", fmt.Errorf("x: %w", kafka.UnsupportedSASLMechanism),
			"SUPPRESSD_KAFKA_SASL_MECHANISM: the brokers (b1:9093,b2:9093) do not take SASL SCRAM-SHA-512 on this listener"},
		{"certificate", fmt.Errorf("kafka.(*Client).Metadata: %w", verify),
			"SUPPRESSD_KAFKA_TLS_CA_FILE/SUPPRESSD_KAFKA_TLS_SERVER_NAME: the TLS certificate of the brokers (b1:9093,b2:9093) is not trusted: x509: certificate signed by unknown authority"},
		{"not TLS", fmt.Errorf("dial: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}),
			"SUPPRESSD_KAFKA_TLS: the brokers (b1:9093,b2:9093) do not answer in TLS on this listener"},
		{"out of reach", fmt.Errorf("dial: %w", io.ErrUnexpectedEOF), ""},
		{"a topic missing", fmt.Errorf("topic t: %w", kafka.UnknownTopicOrPartition), ""},
		{"authorization", fmt.Errorf("x: %w", kafka.TopicAuthorizationFailed), ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Explain(tc.err)
			if tc.want == "" {
				require.Equal(t, tc.err, got)
				require.False(t, errors.Is(got, ErrRefused))
				return
			}
			require.EqualError(t, got, tc.want)
			require.ErrorIs(t, got, ErrRefused)
			require.ErrorIs(t, got, errors.Unwrap(tc.err), "the cause stays reachable")
			require.Equal(t, got, c.Explain(got), "explained once")
			require.NotContains(t, got.Error(), c.SASLPassword)
		})
	}
}
