#!/usr/bin/env bash
# Installs node-rdkafka (KAFKA_CLIENT=rdkafka) into node_modules/, building librdkafka from its
# bundled source once per node-rdkafka version, Node ABI and CPU architecture: the build (a few
# minutes on two cores; needs g++, make, python3, libssl-dev, zlib1g-dev) is kept under
#   ${CARDPULSE_CACHE:-~/.cache/cardpulse}/node-rdkafka/<version>-node<abi>-<arch>/
# and linked into node_modules/node-rdkafka, so a second checkout, a fresh `npm ci` or the next
# CI run links it in seconds. The version is the optional peer dependency in package.json.
# `npm ci` never builds it: users of the default client (kafkajs) do not wait for it.
#
#   npm run rdkafka            (or: bash scripts/rdkafka.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

version="$(node -p 'require("./package.json").peerDependencies["node-rdkafka"]')"
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "rdkafka.sh: package.json must pin node-rdkafka to an exact version, not '$version'" >&2; exit 1; }
key="$version-node$(node -p process.versions.modules)-$(node -p process.arch)"
cache="${CARDPULSE_CACHE:-$HOME/.cache/cardpulse}/node-rdkafka/$key"
module="$cache/node_modules/node-rdkafka"
loads() { node -e 'const k = require(process.argv[1]); console.log(`node-rdkafka ${require(process.argv[1] + "/package.json").version}, librdkafka ${k.librdkafkaVersion}`)' "$module" 2>/dev/null; }

mkdir -p "$(dirname "$cache")"
exec 9>"$cache.lock"
flock 9 # two checkouts building at once would share one half-built folder
if [[ -f $cache/.complete ]] && loads >/dev/null; then
  echo "node-rdkafka $version: cached build in $cache"
else
  echo "node-rdkafka $version: building librdkafka from source into $cache (a few minutes)"
  started=$SECONDS
  rm -rf "$cache"
  mkdir -p "$cache"
  printf '{ "name": "cardpulse-node-rdkafka", "private": true }\n' >"$cache/package.json"
  (cd "$cache" && npm install --no-audit --no-fund --no-save "node-rdkafka@$version" >"$cache/build.log" 2>&1) ||
    { tail -40 "$cache/build.log" >&2; echo "rdkafka.sh: building node-rdkafka failed; the whole log is $cache/build.log" >&2; exit 1; }
  # An npm that held back the install script leaves no binary: build it explicitly.
  [[ -f $module/build/Release/node-librdkafka.node ]] || (cd "$cache" && npm rebuild node-rdkafka >>"$cache/build.log" 2>&1)
  # What the build leaves besides the module and its shared libraries is hundreds of megabytes.
  rm -rf "$module/deps/librdkafka" "$module/build/Release/obj.target" "$module/build/Release/.deps" "$module/build/deps/"*.a
  loads >/dev/null || { echo "rdkafka.sh: the node-rdkafka build does not load; see $cache/build.log" >&2; exit 1; }
  touch "$cache/.complete"
  echo "node-rdkafka $version: built in $((SECONDS - started)) s"
fi
mkdir -p node_modules
ln -sfn "$module" node_modules/node-rdkafka
echo "linked node_modules/node-rdkafka: $(loads)"
