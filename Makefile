# `make test` = the CI command: starts Redis (standalone + cluster) and Kafka,
# then gofmt/vet/go test -race. Extra arguments: make test ARGS="-run Smoke ./internal/..."
.PHONY: test
test:
	bash scripts/test.sh $(ARGS)
