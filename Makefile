# DelugeFS. `make run` starts a node on a default volume and mounts it;
# `make test` runs the whole test suite. Both install what they need.

GO      ?= go
# cgofuse (third_party/cgofuse) builds against libfuse3 on Linux; no tags.
BIN     := bin/delugefs
VOLUME  ?= default
ROOT    ?= var/$(VOLUME)
MOUNT   ?= mnt
FUZZTIME ?= 30000x

.PHONY: all build run test bench deps test-deps vet fmt-check cross fuzz clean

all: build

deps:
	@scripts/deps.sh
	@$(GO) mod download

test-deps:
	@scripts/deps.sh --test
	@$(GO) mod download

build: deps
	$(GO) build -o $(BIN) ./cmd/delugefs

# run creates the default volume the first time and mounts it at ./mnt;
# Ctrl-C unmounts and stops.
run: build
	@mkdir -p $(MOUNT)
	@if [ -f $(ROOT)/node.json ]; then \
		exec ./$(BIN) --id $(VOLUME) --root $(ROOT) --mount $(MOUNT); \
	else \
		exec ./$(BIN) --create --id $(VOLUME) --root $(ROOT) --mount $(MOUNT); \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^third_party/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# cross makes sure the Windows build (cgofuse carries it to WinFsp) and the
# macOS build never rot.
cross:
	GOOS=windows CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/delugefs
	GOOS=windows CGO_ENABLED=0 $(GO) vet ./...

# fuzz runs every fuzz target briefly on top of its committed corpus.
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

test: test-deps fmt-check vet cross
	$(GO) test -race -count=1 -timeout 25m ./...
	@$(MAKE) --no-print-directory fuzz

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 60m ./bench/...

clean:
	rm -rf bin
