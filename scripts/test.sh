#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (Debian
# packages with apt-get, Go modules with go), checks formatting and static
# analysis, then runs every test, interop tests included, and a bounded
# fuzzing pass. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Real third-party programs the interop tests drive.
packages=(openssl curl ca-certificates python3 fetchmail swaks libnet-ssleay-perl msmtp isync)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "== installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$bad" ]; then
	echo "gofmt would change:"; echo "$bad"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test -race"
go test -race -count=1 -timeout 30m ./...

echo "== fuzz (bounded)"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
	for f in $(grep -h '^func Fuzz' "$target"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
		go test -run='^$' -fuzz="^$f\$" -fuzztime=20s "$target"
	done
done
echo "== all tests passed"
