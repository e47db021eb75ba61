#!/usr/bin/env bash
# Reruns the tests of the module a saved file belongs to (make test-watch / test-integration-watch,
# mise run test:watch / test:integration:watch), the Go counterpart of upstream's cargo watch tasks.
#
#   scripts/watch-tests.sh                 go test -count=1 ./... in the changed file's module
#   scripts/watch-tests.sh --integration   go test -tags integration -count=1 ./... in the module and
#                                          in its integration/ module when it has one
#
# entr (Debian package, installed on demand by scripts/ensure-deps.sh --watch) watches the files and
# calls this script again with --run and the path of the first file that changed; the module is the
# nearest directory above it with a go.mod. entr merges the events of one save (and ignores those
# that happen while the tests run), so a save runs the tests once. Watched: the *.go, go.mod, go.sum
# and *.sql files (migrations are embedded) of the modules listed in go.work, tracked or untracked
# but not ignored by git (so never .git, .bin, .ponix), plus the tracked files under testdata/
# (untracked testdata/ files, test output, are not watched). A failing run leaves the watch running;
# Ctrl-C (or q at a terminal) stops it. Extra go test flags: WATCH_TEST_FLAGS (e.g. "-race -run Foo").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

integration=0
if [[ "${1:-}" == --integration ]]; then integration=1; shift; fi

# run_module DIR: the tests of one module, with a header naming the module and the time.
run_module() {
  local dir=$1 why=$2 flags=(-count=1) start rc=0
  if [[ $integration == 1 ]]; then flags+=(-tags integration -timeout "${TEST_TIMEOUT:-15m}"); fi
  # shellcheck disable=SC2206 # word splitting of the user's extra flags is intended
  flags+=(${WATCH_TEST_FLAGS:-})
  start=$(date +%s.%N)
  printf '\n\033[1m=== %s  %s  (%s)\033[0m\n' "$(date +%H:%M:%S.%3N)" "$dir: go test ${flags[*]} ./..." "$why"
  (cd "$dir" && go test "${flags[@]}" ./...) || rc=$?
  local took
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
  if [[ $rc == 0 ]]; then
    printf '\033[32m=== PASS %s in %ss\033[0m\n' "$dir" "$took"
  else
    printf '\033[31m=== FAIL %s in %ss (exit %d); still watching\033[0m\n' "$dir" "$took" "$rc"
  fi
  return $rc
}

# module_of PATH: the workspace-relative directory of the nearest go.mod above PATH ("" if none).
module_of() {
  local d
  d=$(dirname "$(realpath -m "$1")")
  while [[ "$d" == "$root"/* ]]; do
    [[ -f "$d/go.mod" ]] && { echo "${d#"$root"/}"; return; }
    d=$(dirname "$d")
  done
}

# run_for PATH...: the tests of each distinct module of the paths.
run_for() {
  local f m rc=0 seen=" "
  for f in "$@"; do
    m=$(module_of "$f")
    [[ -z "$m" || "$seen" == *" $m "* ]] && continue
    seen+="$m "
    run_module "$m" "changed ${f#"$root"/}" || rc=1
    if [[ $integration == 1 && "$(basename "$m")" != integration && -f "$m/integration/go.mod" ]]; then
      run_module "$m/integration" "changed ${f#"$root"/}" || rc=1
    fi
  done
  return $rc
}

if [[ "${1:-}" == --run ]]; then # called by entr: --run /abs/path/of/changed/file
  shift
  run_for "$@" || true # a failure is reported above; entr keeps watching either way
  exit 0
fi

scripts/ensure-deps.sh --watch

# The modules of go.work (its use block), and the files to watch in them.
mapfile -t modules < <(awk '/^use *\(/{u=1;next} u&&/^\)/{u=0} u{sub(/^\.\//,"",$1); print $1} /^use [^(]/{sub(/^\.\//,"",$2); print $2}' go.work)
list_files() {
  { git ls-files -c -- "${modules[@]}" | grep -E '(\.go|(^|/)go\.(mod|sum)|\.sql)$|/testdata/' || true
    git ls-files -o --exclude-standard -- "${modules[@]}" | grep -E '(\.go|(^|/)go\.(mod|sum)|\.sql)$' | grep -v '/testdata/' || true
  } | sort -u | while read -r f; do [[ -f "$f" ]] && echo "$f"; done
}

entr_flags=(-p -d)
# Without a terminal (a background job, CI) entr must not read keys from one.
if ! { : </dev/tty; } 2>/dev/null; then entr_flags+=(-n); fi
self=$root/scripts/watch-tests.sh
args=(); [[ $integration == 1 ]] && args=(--integration)
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
trap 'echo; echo "watch-tests: stopped"; exit 130' INT TERM

mode="go test"; [[ $integration == 1 ]] && mode="go test -tags integration"
first=1
while true; do
  files=$(list_files)
  if [[ $first == 1 ]]; then
    echo "watch-tests: watching $(wc -l <<<"$files") files in ${#modules[@]} modules; a save reruns $mode in its module (Ctrl-C stops)"
    first=0
  else
    # entr stopped for a file added to a watched directory (a new file, or an editor's temporary
    # file during a save): run the tests of whatever changed since entr started, then watch again.
    changed=()
    while read -r f; do [[ "$f" -nt "$stamp" ]] && changed+=("$root/$f"); done <<<"$files"
    if [[ ${#changed[@]} -gt 0 ]]; then run_for "${changed[@]}" || true; fi
  fi
  touch "$stamp"
  rc=0
  entr "${entr_flags[@]}" "$self" "${args[@]}" --run /_ <<<"$files" || rc=$?
  [[ $rc == 2 ]] || exit "$rc" # 2: a new file in a watched directory; 0: SIGINT
done
