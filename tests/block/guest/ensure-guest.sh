#!/bin/bash
# ensure-guest.sh -- prints the directory of a built test guest, building it on a cache miss.
#
# The image is cached outside the work tree (CI runs on the development machine, so the cache
# survives between runs; a fresh machine rebuilds it, ~2.5-6.5 min): SHOAL_GUEST_CACHE, else
# /var/cache/shoal-guest as root, else ${XDG_CACHE_HOME:-~/.cache}/shoal-guest. The cache key is the
# sha256 of the files that define the image, so editing any of them triggers a rebuild; older
# images are removed. An flock serialises concurrent callers (two pytest runs build once).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${SHOAL_GUEST_CACHE:-}" ]; then CACHE="$SHOAL_GUEST_CACHE"
elif [ "$(id -u)" = 0 ]; then CACHE=/var/cache/shoal-guest
else CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/shoal-guest"; fi
mkdir -p "$CACHE"
KEY=$(cat "$HERE/build-guest.sh" "$HERE/guest-init.sh" "$HERE/guest-packages.sh" | sha256sum | cut -c1-16)
GUEST="$CACHE/guest-$KEY"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$GUEST/root.img" ] && [ -x "$GUEST/linux.uml" ]; then
  echo "ensure-guest: cached guest $GUEST" >&2
else
  t0=$(date +%s)
  rm -rf "$GUEST.tmp"
  DEBOOTSTRAP_CACHE="$CACHE/debs" "$HERE/build-guest.sh" "$GUEST.tmp" >&2
  mv "$GUEST.tmp" "$GUEST"
  echo "ensure-guest: built guest in $(( $(date +%s) - t0 )) s -> $GUEST" >&2
  for old in "$CACHE"/guest-*; do [ "$old" = "$GUEST" ] || rm -rf --one-file-system "$old"; done
fi
echo "$GUEST"
