#!/usr/bin/env bash
# Installs OpenClaw's Control UI (its web dashboard), pinned, for gateway.controlUi.root:
#   scripts/install-control-ui.sh [DEST]
# DEST defaults to ${XDG_DATA_HOME:-$HOME/.local/share}/drawbridge/control-ui.
# `npm pack` fetches only the package's tarball from the registry (nothing installed, no
# scripts run); its sha512 is checked against the integrity pinned below, and only
# package/dist/control-ui/ is extracted into DEST, with the package's LICENSE (MIT). Running it
# again does nothing when DEST already holds this version. Writes nothing but DEST (and npm's
# own cache).
set -euo pipefail

readonly VERSION="2026.9.6"
# npm view openclaw@2026.9.6 dist.integrity
readonly INTEGRITY="sha512-Ie0kyQSCVfFqixsgVg39vevUDq01Ch5u3+7Yu5Y3qARczmdAe+lzp8bVnO9925rHiW/+CFp70zfORCyPmCH31g=="
readonly STAMP_NAME=".drawbridge-control-ui"  # hidden: the gateway never serves dot files
readonly STAMP="openclaw@${VERSION} ${INTEGRITY}"

die() {
  echo "install-control-ui: $*" >&2
  exit 1
}

dest="${1:-${XDG_DATA_HOME:-$HOME/.local/share}/drawbridge/control-ui}"
[[ -n "$dest" ]] || die "DEST is empty"
[[ "$dest" = /* ]] || dest="$PWD/$dest"
dest="${dest%/}"

print_config() {
  local escaped=${dest//\\/\\\\}
  escaped=${escaped//\"/\\\"}
  echo "Add to the gateway's config file (drawbridge.json):"
  echo "  \"gateway\": {\"controlUi\": {\"root\": \"${escaped}\"}}"
}

if [[ -f "$dest/$STAMP_NAME" && -f "$dest/index.html" ]] &&
   [[ "$(cat "$dest/$STAMP_NAME")" == "$STAMP" ]]; then
  echo "OpenClaw Control UI ${VERSION} is already installed in ${dest}"
  print_config
  exit 0
fi
# Only a folder this script installed is replaced: anything else there is the user's.
if [[ -e "$dest" && ! -f "$dest/$STAMP_NAME" ]]; then
  if [[ ! -d "$dest" ]] || [[ -n "$(ls -A "$dest")" ]]; then
    die "$dest exists and was not installed by this script; remove it or give another DEST"
  fi
fi
command -v npm >/dev/null || die "npm is needed (apt-get install npm, or Node.js from nodejs.org)"

sha512_base64() {
  if command -v openssl >/dev/null; then
    openssl dgst -sha512 -binary "$1" | base64 -w0
  else
    python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode(), end="")' "$1"
  fi
}

parent="$(dirname "$dest")"
work="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-control-ui.XXXXXX")"
stage=""
old=""
cleanup() {
  rm -rf "$work"
  [[ -z "$stage" ]] || rm -rf "$stage"
  [[ -z "$old" ]] || rm -rf "$old"
}
trap cleanup EXIT

echo "fetching openclaw@${VERSION} from the npm registry (the tarball only)..."
# From the temp folder: no package.json or .npmrc of the current folder takes part.
tarball="$(cd "$work" && npm pack "openclaw@${VERSION}" --ignore-scripts --silent \
  --pack-destination "$work" | tail -n 1)"
tarball="$work/$(basename "$tarball")"
[[ -f "$tarball" ]] || die "npm pack did not produce the tarball (got: $tarball)"

actual="sha512-$(sha512_base64 "$tarball")"
[[ "$actual" == "$INTEGRITY" ]] ||
  die "the tarball's integrity is $actual, expected $INTEGRITY: not installed"

# Regular files and folders only: a link or a device in the archive is refused, not extracted.
odd="$(tar -tvzf "$tarball" package/dist/control-ui package/LICENSE | grep -v '^[-d]' || true)"
[[ -z "$odd" ]] || die "unexpected entries in the archive (links or devices): ${odd%%$'\n'*}"

# Staged beside DEST (same file system), then renamed into place.
mkdir -p "$parent"
stage="$(mktemp -d "$parent/.control-ui-new.XXXXXX")"
tar -xzf "$tarball" -C "$stage" --no-same-owner --no-same-permissions --strip-components=3 \
  package/dist/control-ui
tar -xzf "$tarball" -C "$stage" --no-same-owner --no-same-permissions --strip-components=1 \
  package/LICENSE
[[ -f "$stage/index.html" ]] || die "the archive has no dist/control-ui/index.html"
printf '%s\n' "$STAMP" > "$stage/$STAMP_NAME"
chmod -R u+rwX,go+rX,go-w "$stage"

# An earlier version (or an empty folder) goes aside first, and comes back if the move fails.
if [[ -e "$dest" ]]; then
  old="$(mktemp -d "$parent/.control-ui-old.XXXXXX")"
  mv "$dest" "$old/previous"
fi
if ! mv "$stage" "$dest"; then
  [[ -z "$old" ]] || mv "$old/previous" "$dest"
  die "cannot move the new files into $dest"
fi
stage=""
echo "OpenClaw Control UI ${VERSION} installed in ${dest} (MIT: ${dest}/LICENSE)"
print_config
