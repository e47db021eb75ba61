#!/usr/bin/env bash
# usage: scripts/release.sh VERSION [--tag]
#
# Prepares a release of the modules listed in scripts/release-modules at VERSION (vX.Y.Z):
#   1. sets every requirement on a module of the workspace, in every go.mod of go.work, to
#      VERSION (the replace directives stay: importers ignore them, local development keeps
#      them), and says what it changed;
#   2. prints the git commands that tag each module <dir>/VERSION and push the tags.
# With --tag it also creates the tags (annotated, on HEAD), once the bump is committed (the
# work tree must be clean). It never pushes.
#
# The usual sequence: scripts/release.sh v0.1.0; review; make tidy-check build-modules test;
# commit; scripts/release.sh v0.1.0 --tag; make check-release; git push origin <the tags>.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { printf 'release: %s\n' "$*" >&2; exit 1; }
version="" tag=0
for a in "$@"; do
  case "$a" in
    --tag) tag=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    v*) version=$a ;;
    *) die "unknown argument $a (usage: scripts/release.sh VERSION [--tag])" ;;
  esac
done
[[ "$version" =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION must look like v0.1.0 (got '${version}')"
[[ "${BASH_REMATCH[1]}" == 0 || "${BASH_REMATCH[1]}" == 1 ]] ||
  die "$version: a major version above v1 needs /vN module paths; not supported by this script"

mapfile -t modules < <(grep -vE '^\s*(#|$)' scripts/release-modules)
for m in "${modules[@]}"; do
  [[ -f "$m/go.mod" ]] || die "scripts/release-modules lists $m, which has no go.mod"
  grep -qE "^\s*\./$m\s*$" go.work || die "$m is not in go.work"
done

(cd scripts/releasetool && GOWORK=off go run . bump -version "$version" -work "$root/go.work")

tags=()
for m in "${modules[@]}"; do tags+=("$m/$version"); done

if [[ $tag == 0 ]]; then
  printf '\nNext: review the changes, run make tidy-check build-modules test, commit, then tag and push:\n\n'
  for t in "${tags[@]}"; do printf "  git tag -a %s -m 'Ponix %s'\n" "$t" "$version"; done
  printf '  make check-release\n  git push origin %s\n\n' "${tags[*]}"
  printf '(scripts/release.sh %s --tag creates the tags on HEAD once the work tree is clean.)\n' "$version"
  exit 0
fi

if ! git diff --quiet || ! git diff --cached --quiet; then
  git status --short
  die "the work tree has changes: commit the bump first, then run scripts/release.sh $version --tag"
fi
for t in "${tags[@]}"; do
  if git rev-parse -q --verify "refs/tags/$t" >/dev/null; then
    [[ "$(git rev-parse "$t^{commit}")" == "$(git rev-parse HEAD)" ]] || die "tag $t exists on another commit"
    echo "tag $t exists on HEAD"
    continue
  fi
  git tag -a "$t" -m "Ponix $version"
  echo "tagged $t"
done
printf '\nTags are local. Check them (make check-release), then: git push origin %s\n' "${tags[*]}"
