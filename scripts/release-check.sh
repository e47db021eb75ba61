#!/usr/bin/env bash
# usage: scripts/release-check.sh [--snapshot | --auto] [--update]
#
# Proves that Ponix's released modules can be imported as another team imports them: from a
# Go module proxy, at their tags, with no workspace and no replace directive.
#   1. Builds an on-disk module proxy (GOPROXY=file://) of the repository at its tags
#      <dir>/vX.Y.Z (scripts/releasetool proxy; proto/ is served under its buf.build path too).
#   2. Copies the example examples/readings (which requires the released version, no replace)
#      out of the workspace, resolves it once with that proxy in front of the Go module cache
#      and the usual GOPROXY, and adds the third-party modules it used to the proxy.
#   3. With GOWORK=off and GOPROXY=file://<that proxy> only: in an empty module cache, checks
#      that the example's go.mod is what go mod tidy makes of it (tidy downloads every module
#      the example needs from the proxy); then, in the usual module cache (for the build cache;
#      Ponix's modules are checked against the checksums just taken and removed afterwards),
#      go vet, go build and go test -tags integration (real NATS and ClickHouse, as the
#      example's tests start them); builds the example with the README's replace for a proxy
#      that does not serve the buf.build path; and builds every released module as a dependency.
# It fails when a tag of scripts/release-modules is missing at the version the example
# requires, when a module cannot be resolved from the proxy, or when a step fails.
#
#   --snapshot  check the work tree instead of the tags: a copy of it is bumped and tagged
#               (scripts/release.sh) in a temporary repository first
#   --auto      the tags when the repository has release tags, else --snapshot (with a notice)
#   --update    write the example's go.mod and go.sum as resolved in step 2 back into
#               examples/readings (in --snapshot mode without the checksums of Ponix's modules,
#               which only real tags fix)
# RELEASE_CHECK_KEEP=1 keeps the temporary directory (the proxy, the copies, the logs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
example=examples/readings
prefix=github.com/ponix-go/ponix
# Paths the public checksum database does not know: checksums come from the proxy's zips.
nosumdb="$prefix,buf.build/gen/go/ponix/ponix"

t0=$(date +%s)
log() { printf '==> release-check [%3ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
die() { printf '\nrelease-check: FAIL: %s\n' "$*" >&2; exit 1; }

mode=tags update=0
for a in "$@"; do
  case "$a" in
    --snapshot) mode=snapshot ;;
    --auto) mode=auto ;;
    --update) update=1 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $a (see scripts/release-check.sh --help)" ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ponix-release-check.XXXXXX")
cleanup() { if [[ ${RELEASE_CHECK_KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

mapfile -t modules < <(grep -vE '^\s*(#|$)' "$root/scripts/release-modules")

# The version the example requires: one version for all of Ponix's modules, and no replace.
gomod="$root/$example/go.mod"
grep -qE '^\s*replace\b' "$gomod" && die "$example/go.mod has replace directives: the example must be what an importer writes"
mapfile -t versions < <(grep -oE "($prefix/[^[:space:]]+|buf\.build/gen/go/ponix/ponix/protocolbuffers/go) v[^[:space:]]+" "$gomod" | awk '{print $2}' | sort -u)
[[ ${#versions[@]} -eq 1 ]] || die "$example/go.mod requires Ponix's modules at ${#versions[@]} versions (${versions[*]:-none}); want one"
version=${versions[0]}
while read -r path _; do
  dir=${path#"$prefix/"}
  [[ "$path" == buf.build/* ]] && dir=proto
  printf '%s\n' "${modules[@]}" | grep -qxF "$dir" || die "$example requires $path, which is not a released module (scripts/release-modules)"
done < <(grep -oE "($prefix/[^[:space:]]+|buf\.build/gen/go/ponix/ponix/protocolbuffers/go) v[^[:space:]]+" "$gomod")

log "building scripts/releasetool"
(cd "$root/scripts/releasetool" && GOWORK=off go build -o "$work/releasetool" .)

# The repository to release from, and the example to check.
files() { git -C "$1" ls-files -z --cached --others --exclude-standard -- "${@:2}" |
  while IFS= read -r -d '' f; do [[ -e "$1/$f" ]] && printf '%s\0' "$f"; done; }
copy() { files "$1" "${@:3}" | tar -C "$1" --null -T - -cf - | tar -C "$2" -xf -; }
if [[ $mode == auto ]]; then
  if [[ -n "$(git -C "$root" tag -l '*/v*')" ]]; then
    mode=tags
  else
    mode=snapshot
    log "NOTE: this clone has no release tags (*/v*): checking a snapshot of the work tree tagged as $version instead"
  fi
fi
if [[ $mode == snapshot ]]; then
  log "snapshot: copying the work tree, bumping and tagging it as $version (scripts/release.sh)"
  repo="$work/repo"
  mkdir -p "$repo"
  copy "$root" "$repo" .
  export GIT_AUTHOR_NAME=release-check GIT_AUTHOR_EMAIL=release-check@localhost \
    GIT_COMMITTER_NAME=release-check GIT_COMMITTER_EMAIL=release-check@localhost
  (
    cd "$repo"
    git init -q && git add -A && git commit -q -m "snapshot of $root"
    scripts/release.sh "$version" >"$work/bump.log" || { cat "$work/bump.log"; exit 1; }
    git commit -q -am "release $version" || true
    scripts/release.sh "$version" --tag >/dev/null
  ) || die "could not tag a snapshot of the work tree"
  grep -E 'changed' "$work/bump.log" | sed 's/^/    /'
else
  repo=$root
fi

missing=()
for m in "${modules[@]}"; do
  git -C "$repo" rev-parse -q --verify "refs/tags/$m/$version" >/dev/null || missing+=("$m/$version")
done
[[ ${#missing[@]} -eq 0 ]] || die "missing tags: ${missing[*]}
  the example requires $version of every released module; tag them (scripts/release.sh $version --tag),
  or check the work tree instead of the tags: scripts/release-check.sh --snapshot"

log "proxy: modules at their tags (git tag -l '*/v*')"
proxy="$work/proxy"
"$work/releasetool" proxy -repo "$repo" -out "$proxy" -prefix "$prefix" >"$work/proxy.log" ||
  { cat "$work/proxy.log"; die "could not build the module proxy from the tags"; }
sed 's/^/    /' "$work/proxy.log"

# Every go command below runs outside the workspace (GOWORK=off), with no replace directive, and
# takes Ponix's modules from the proxy; their checksums come from the proxy's zips (GONOSUMDB).
# GODEBUG=goindex=0: the go command indexes each module of the module cache once, in the build
# cache, keyed by its directory, trusting that a module version never changes. Here the same
# version comes back with other contents (a snapshot, a re-tagged release) after the purge, and a
# stale index makes the compiler miss imports ("could not import slices (open : no such file)").
gocmd() {
  env GODEBUG=goindex=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=mod -modcacherw" \
    GONOSUMDB="$nosumdb" GONOPROXY= GOPRIVATE= "$@"
}
modcache=$(go env GOMODCACHE)
upstream=$(go env GOPROXY)
src=$root
[[ $mode == snapshot ]] && src=$repo

# Ponix's modules at the release version go into the usual module cache from the proxy (for
# the build cache: there the third-party packages sit where earlier builds, such as CI's lint and
# build-modules, compiled them; a cold compile costs minutes on two cores). They are removed
# from it before and after, under a lock, so that no other run and no later go command takes
# them for the real release.
mkdir -p "$modcache/cache"
exec 9>"$modcache/cache/ponix-release-check.lock"
flock 9
purge() {
  local d p
  for d in github.com/ponix-go/ponix buf.build/gen/go/ponix/ponix; do
    for p in "$modcache/$d" "$modcache/cache/download/$d"; do
      [[ -e "$p" ]] && { chmod -R u+w "$p"; rm -rf "$p"; }
      rmdir -p --ignore-fail-on-non-empty "$(dirname "$p")" 2>/dev/null || true
    done
  done
  return 0
}
purge
trap 'purge; cleanup' EXIT

log "resolving $example against the proxy (third-party modules from the module cache or $upstream)"
mkdir -p "$work/resolve"
copy "$src" "$work/resolve" "$example"
# A snapshot's modules are not the release's: checksums of Ponix's modules that the example's
# go.sum may hold (from the real tags) do not apply to them.
unsum() { [[ $mode != snapshot ]] || sed -i -E "\#^($prefix/|buf\.build/gen/go/ponix/ponix/)#d" "$1"; }
unsum "$work/resolve/$example/go.sum"
resolve="$work/resolve/$example"
(cd "$resolve" && gocmd GOPROXY="file://$proxy,$upstream" go mod tidy) >"$work/resolve.log" 2>&1 ||
  { cat "$work/resolve.log"; die "$example cannot be resolved against the released modules"; }

# The third-party modules the example needs, from the module cache into the proxy: the modules
# of its go.sum, as tidy leaves it (a zip where a package is needed, else the go.mod only).
esc() { sed -e 's/[A-Z]/!\L&/g' <<<"$1"; } # the module cache's and proxies' case-encoding
while read -r mod ver _; do
  case "$mod" in "$prefix"/* | buf.build/gen/go/ponix/ponix/*) continue ;; esac
  v=${ver%/go.mod}
  from="$modcache/cache/download/$(esc "$mod")/@v/$(esc "$v")"
  to="$proxy/$(esc "$mod")/@v/$(esc "$v")"
  mkdir -p "$(dirname "$to")"
  exts=(mod info)
  [[ $ver == */go.mod ]] || exts+=(zip)
  for x in "${exts[@]}"; do
    [[ -e "$to.$x" ]] && continue
    if [[ -e "$from.$x" ]]; then
      ln -f "$from.$x" "$to.$x" 2>/dev/null || cp "$from.$x" "$to.$x"
    elif [[ $x != info ]]; then
      die "the module cache has no $from.$x, which $example needs"
    fi
  done
done <"$resolve/go.sum"
find "$proxy" -type d -name '@v' | while read -r d; do
  [[ -e "$d/list" ]] || (cd "$d" && ls -- *.mod | sed 's/\.mod$//' >list)
done
log "proxy: $(find "$proxy" -name '*.zip' | wc -l) module zips, $(find "$proxy" -name '*.mod' | wc -l) go.mod files, $(du -sh "$proxy" | cut -f1)"

if [[ $update == 1 ]]; then
  cp "$resolve/go.mod" "$root/$example/go.mod"
  if [[ $mode == snapshot ]]; then
    grep -vE "^($prefix/|buf\.build/gen/go/ponix/ponix/)" "$resolve/go.sum" >"$root/$example/go.sum"
  else
    cp "$resolve/go.sum" "$root/$example/go.sum"
  fi
  log "updated $example/go.mod and go.sum"
fi

# The proof, with GOPROXY=file://<the proxy> only.
served=$proxy cache="$work/modcache"
offline() { gocmd GOMODCACHE="$cache" GOPROXY="file://$served" "$@"; }
step() {
  local what=$1; shift
  log "$what"
  if ! offline "$@" >"$work/step.log" 2>&1; then
    cat "$work/step.log"
    if grep -qE 'sum\.golang\.org|verifying .*: missing' "$work/step.log"; then
      echo "hint: $example/go.sum must hold the checksums of the third-party modules (an importer commits them);"
      echo "      scripts/release-check.sh --update$([[ $mode == snapshot ]] && echo ' --snapshot') writes them (it needs the usual module proxy)"
    fi
    die "$what"
  fi
}
check="$work/check"
mkdir -p "$check"
copy "$src" "$check" "$example"
cp "$root/$example/go.mod" "$root/$example/go.sum" "$check/$example/" # as --update may have written them
unsum "$check/$example/go.sum"
cd "$check/$example"
cp go.mod "$work/go.mod.committed"
# 1. An empty module cache: go mod tidy downloads every module that the example's packages and
#    tests need (for every platform) from the proxy, so the proxy alone must hold them; and the
#    example's go.mod must be what tidy makes of it. go.sum now holds the checksums of Ponix's
#    modules as the proxy serves them.
step "empty module cache, GOPROXY=file://<proxy> only: go mod tidy leaves $example/go.mod unchanged" go mod tidy
diff -u "$work/go.mod.committed" go.mod ||
  die "$example/go.mod is not what go mod tidy makes of it against the released modules (diff above): run scripts/release-check.sh --update"

# 2. Vet, build and test in the usual module cache (see purge above), still with
#    GOPROXY=file://<proxy> only; Ponix's modules are checked against the checksums of step 1.
cache=$modcache
step "go vet ./... (and -tags integration)" sh -c 'go vet ./... && go vet -tags integration ./...'
step "go build ./..." go build ./...
log "go test -tags integration -count=1 ./... (real NATS and ClickHouse)"
if ! offline go test -tags integration -count=1 ./... >"$work/test.log" 2>&1; then
  cat "$work/test.log"
  die "the example's tests failed against the released modules"
fi
grep -E '^(ok|---|\?)' "$work/test.log" | sed 's/^/    /'

# 3. The recipe of the example's README for a proxy that serves Ponix's repository only, as the
#    public proxy does: buf.build/gen/go/ponix/ponix/protocolbuffers/go is not served, and a
#    replace points it at the proto module of the repository.
served="$work/proxy-public"
cp -al "$proxy" "$served"
rm -rf "$served/buf.build/gen/go/ponix"
mkdir -p "$work/public"
copy "$src" "$work/public" "$example"
cp go.mod go.sum "$work/public/$example/"
cd "$work/public/$example"
go mod edit -replace="buf.build/gen/go/ponix/ponix/protocolbuffers/go@$version=$prefix/proto@$version"
step "a proxy of the repository only (no buf.build path) and the README's replace: go build, go vet -tags integration" \
  sh -c 'go build ./... && go vet -tags integration ./...'
served=$proxy

# Every released module builds as a dependency (also those the example does not import).
all="$work/all"
mkdir -p "$all"
cd "$all"
printf 'module releasecheck.invalid/all\n\ngo 1.26.0\n' >go.mod
cp "$check/$example/go.sum" go.sum
for m in "${modules[@]}"; do git -C "$repo" show "$m/$version:$m/go.sum" 2>/dev/null || true; done >>go.sum
targets=() pkgs=()
for m in "${modules[@]}"; do
  path=$prefix/$m
  [[ $m == proto ]] && path=buf.build/gen/go/ponix/ponix/protocolbuffers/go
  targets+=("$path@$version") pkgs+=("$path/...")
done
step "go get ${#targets[@]} released modules @$version" go get "${targets[@]}"
step "go build of every released package as a dependency" go build "${pkgs[@]}"

log "OK: ${#modules[@]} modules at $version ($([[ $mode == snapshot ]] && echo "snapshot of the work tree" || echo "tags")) import cleanly from a module proxy; $example vetted, built and tested against them"
