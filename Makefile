# Convenience targets; the README's two commands are `./run demo` and `./run test`.
.PHONY: demo test lint services bench
demo:
	./run demo $(ARGS)
test:
	./run test $(PYTEST_ARGS)
lint:
	./run lint
services:
	bash scripts/setup-services.sh
