#!/usr/bin/env bash
# Rebuilds the vendored API reference viewer that /docs serves:
# swagger-ui-dist (Apache-2.0) from the npm registry, at the pinned version
# and checksum below, into internal/webui/assets/vendor/swagger-ui/. The
# files are committed, so that `go build` needs no npm: run this only to
# change the version (and then update VERSION and SHA256 here).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=5.35.0
SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
DEST=internal/webui/assets/vendor/swagger-ui

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
echo "$SHA256  $tmp/swagger-ui-dist-$VERSION.tgz" | sha256sum -c --quiet
tar -xzf "$tmp/swagger-ui-dist-$VERSION.tgz" -C "$tmp"
rm -rf "$DEST"
mkdir -p "$DEST"
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE; do
	cp "$tmp/package/$f" "$DEST/$f"
done
printf 'swagger-ui-dist %s (npm), Apache-2.0; sha256 of the package %s\nRebuilt by scripts/vendor-swagger-ui.sh.\n' "$VERSION" "$SHA256" >"$DEST/VERSION"
echo "vendored swagger-ui-dist $VERSION into $DEST"
