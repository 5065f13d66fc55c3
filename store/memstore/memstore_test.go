package memstore

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/store/storetest"
	"github.com/suppressd/suppressd/suppression"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) suppression.Store { return New() })
}

func TestSetError(t *testing.T) {
	s := New()
	boom := errors.New("boom")
	s.SetError(boom)
	ctx := context.Background()
	require.ErrorIs(t, s.Ready(ctx), boom)
	_, err := s.Get(ctx, "default", []suppression.StorageKey{storetest.Key(1)})
	require.ErrorIs(t, err, boom)
	_, err = s.Apply(ctx, nil)
	require.ErrorIs(t, err, boom)
	s.SetError(nil)
	require.NoError(t, s.Ready(ctx))
}
