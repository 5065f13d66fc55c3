package main

import (
	"context"
	"log/slog"

	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/consumer"
)

// addLag measures a stage's consumer lag on a timer, from the group's
// committed offsets and the partitions' end offsets: the whole group's, so
// a stuck or departed member's partitions are reported too, by every
// replica (consumer.Lag).
func addLag(g *oklogrun.Group, s *settings, stage, group string, topics []string, log *slog.Logger, reg prometheus.Registerer) error {
	admin, err := s.Kafka.Admin()
	if err != nil {
		return err
	}
	lag := consumer.NewLag(admin, consumer.LagOptions{Stage: stage, Group: group, Topics: topics}, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		lag.Run(ctx)
		admin.Close()
		return nil
	}, func(error) { cancel() })
	return nil
}
