# Developer entry points. `make run` starts a demo instance, `make test` runs what CI runs.
CARGO ?= cargo
RAPPORT := target/release/rapport
DEMO_CONFIG := var/rapport.toml

# Each recipe runs in one bash with errexit and pipefail, so a failing step stops it and shell
# variables (the demo passwords) live only in that shell's memory.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
.PHONY: help run test package lint-packages clean-demo

# llama.cpp's CMake builds SSE-only kernels (some 60x slower) when SOURCE_DATE_EPOCH is set, as
# reproducible-build environments do. .cargo/config.toml also names the kernels; this keeps the two
# from disagreeing.
unexport SOURCE_DATE_EPOCH

help:
	@echo "make run         build and serve a demo instance from ./var (https://127.0.0.1:8443)"
	echo "make test        formatting, clippy and all tests, as CI runs them"
	echo "make package     release .deb and .rpm packages (and the model's) in target/packages/"
	echo "make clean-demo  delete the demo instance in ./var"

run:
	@CARGO="$(CARGO)" scripts/install-deps.sh
	scripts/fetch-model.sh
	$(CARGO) build --release
	if [[ ! -e var/master.key ]]; then
	  # A half-initialised var/ would make the next run fail, so remove it unless init completes.
	  trap 'echo "demo initialisation failed; removed var/" >&2; rm -rf var' EXIT
	  trap 'exit 130' INT TERM HUP
	  $(RAPPORT) init --config $(DEMO_CONFIG) --data-dir var/data --listen 127.0.0.1:8443
	  $(RAPPORT) tenant create --config $(DEMO_CONFIG) --slug demo --name "Demo Company"
	  PW="$$(openssl rand -base64 18)"; PW2="$$(openssl rand -base64 18)"
	  # printf is a builtin: the passwords reach rapport on stdin, never argv or a file.
	  printf '%s\n' "$$PW" | $(RAPPORT) user add --config $(DEMO_CONFIG) --email operator@demo.local \
	    --role operator --password-stdin --temporary
	  printf '%s\n' "$$PW2" | $(RAPPORT) user add --config $(DEMO_CONFIG) --email admin@demo.local \
	    --role tenant-admin --tenant demo --password-stdin --temporary
	  trap - EXIT INT TERM HUP
	  border="+$$(printf '%*s' 68 '' | tr ' ' -)+"
	  printf '\n%s\n' "$$border"
	  printf '| %-66s |\n' "Rapport demo: https://127.0.0.1:8443" "" \
	    "operator      operator@demo.local  $$PW" \
	    "tenant admin  admin@demo.local     $$PW2" "" \
	    "One-time passwords, shown only now: both must be changed at first" \
	    "login. The certificate is self-signed, so the browser will warn." \
	    "To start again from scratch: make clean-demo"
	  printf '%s\n\n' "$$border"
	fi
	exec $(RAPPORT) serve --config $(DEMO_CONFIG)

test:
	@echo "==> install-deps --test --package"
	CARGO="$(CARGO)" scripts/install-deps.sh --test --package
	echo "==> fetch-model (the inference tests use the real default model)"
	scripts/fetch-model.sh
	echo "==> cargo fmt --check"
	$(CARGO) fmt --all -- --check
	echo "==> cargo clippy"
	$(CARGO) clippy --all-targets --locked -- -D warnings
	echo "==> cargo test"
	$(CARGO) test --locked
	# The packages are built from the binary cargo test just built (a release build would compile
	# llama.cpp a second time): the same metadata, scripts and unit as `make package`, linted and
	# installed. packaging/README.md says what this does and does not cover.
	echo "==> packages from the test build"
	CARGO="$(CARGO)" scripts/package.sh --test-build
	echo "==> lintian and rpmlint"
	packaging/lint.sh
	echo "==> install test"
	packaging/install-test.sh

package:
	@CARGO="$(CARGO)" scripts/install-deps.sh --package
	CARGO="$(CARGO)" scripts/package.sh
	packaging/lint.sh

lint-packages:
	@packaging/lint.sh

clean-demo:
	rm -rf var
