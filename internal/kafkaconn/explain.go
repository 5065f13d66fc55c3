package kafkaconn

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/segmentio/kafka-go"
)

// ErrRefused is what errors.Is finds in an error Explain explained: the
// brokers refused the credentials, or their certificate was refused. A
// setting is wrong, and waiting will not mend it.
var ErrRefused = errors.New("kafka refused the credentials, or its certificate was refused")

// Explain names the settings to fix in the error of a connection the
// brokers refused. kafka-go says "kafka.(*Client).Metadata: [58] SASL
// Authentication Failed: ..." or "tls: failed to verify certificate:
// x509: ..."; Explain says which variables are wrong, then the reason
// without kafka-go's call chain. Any other error is returned as it is. The
// original stays reachable with errors.Is/As; no secret is in the text.
func (c Config) Explain(err error) error {
	if err == nil || errors.Is(err, ErrRefused) {
		return err
	}
	at := "the brokers (" + strings.Join(c.Brokers, ",") + ")"
	var (
		verify *tls.CertificateVerificationError
		header tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return &refusedError{err: err, msg: "SUPPRESSD_KAFKA_SASL_USERNAME/SUPPRESSD_KAFKA_SASL_PASSWORD: authentication failed: " +
			at + " refused the SASL " + strings.ToUpper(c.SASLMechanism) + " login"}
	case errors.Is(err, kafka.UnsupportedSASLMechanism), errors.Is(err, kafka.IllegalSASLState):
		return &refusedError{err: err, msg: "SUPPRESSD_KAFKA_SASL_MECHANISM: " + at + " do not take SASL " +
			strings.ToUpper(c.SASLMechanism) + " on this listener"}
	case errors.As(err, &verify):
		return &refusedError{err: err, msg: "SUPPRESSD_KAFKA_TLS_CA_FILE/SUPPRESSD_KAFKA_TLS_SERVER_NAME: the TLS certificate of " +
			at + " is not trusted: " + verify.Err.Error()}
	case errors.As(err, &header):
		return &refusedError{err: err, msg: "SUPPRESSD_KAFKA_TLS: " + at + " do not answer in TLS on this listener"}
	}
	return err
}

// refusedError is a refusal explained; its text replaces kafka-go's.
type refusedError struct {
	msg string
	err error
}

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Unwrap() error        { return e.err }
func (e *refusedError) Is(target error) bool { return target == ErrRefused }
