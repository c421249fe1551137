#!/usr/bin/env bash
# etcd.sh builds real etcd and etcdctl (the oracle the tests compare against)
# into a cache outside the repository, once. Prints the directory.
# `go install` of etcd fails on its replace directives, so it is built in a
# throwaway module.
set -euo pipefail
version=${ETCD_VERSION:-v3.6.16}
cache=${METASTORE_CACHE:-$HOME/.cache/metastore}/etcd-$version
if [ -x "$cache/etcd" ] && [ -x "$cache/etcdctl" ]; then
  echo "$cache"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"
(
  cd "$work"
  go mod init etcdbuild >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/etcdctl/v3@$version" >/dev/null 2>&1
  go build -o "$cache/etcd" go.etcd.io/etcd/server/v3
  go build -o "$cache/etcdctl" go.etcd.io/etcd/etcdctl/v3
) >&2
echo "$cache"
