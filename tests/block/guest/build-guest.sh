#!/bin/bash
# build-guest.sh OUTDIR -- builds the User-Mode-Linux test guest for blockd's production path
# (LVM thin + LIO + open-iscsi): OUTDIR/root.img (sparse ext4), OUTDIR/linux.uml, OUTDIR/build.info.
#
# Adapted from the block-storage reference recipe (measured: 145-388 s). debootstrap -> chroot apt ->
# mke2fs -d (no loop mount, no KVM). The guest boots with init=/sbin/guest-init (guest-init.sh next
# to this file), runs one script and powers off; see run-in-guest.sh.
#
# Needs root, debootstrap, e2fsprogs. Python packages blockd needs that Debian lacks at the right
# version (aiohttp, uvloop >= 0.18 for uvloop.run) are installed with the host's pip (PIP=...) into
# the guest's /usr/local; host and guest are both CPython 3.11, so the same wheels fit.
# Env: MIRROR (default: read from the host's apt sources), SUITE=bookworm, IMG_SIZE=3G,
#      DEBOOTSTRAP_CACHE=DIR (keeps .debs between builds), PIP=python-with-pip, PIP_PKGS="...".
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: build-guest.sh OUTDIR}"
SUITE="${SUITE:-bookworm}"
IMG_SIZE="${IMG_SIZE:-3G}"
PIP="${PIP:-python3}"
# shellcheck source=guest-packages.sh
. "$HERE/guest-packages.sh"

log() { echo "[build-guest $(date +%T)] $*" >&2; }

host_mirror() {
  local f m
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk -v suite="$SUITE" 'BEGIN{RS="";FS="\n"}
      { t="";u="";s="";en=1
        for(i=1;i<=NF;i++){
          if($i ~ /^Types:/) t=$i; if($i ~ /^URIs:/) u=$i; if($i ~ /^Suites:/) s=$i;
          if($i ~ /^Enabled:[ \t]*[Nn]o/) en=0 }
        if (en && t ~ /[ \t]deb([ \t]|$)/ && (s" ") ~ ("[ \t]" suite "[ \t]")) {
          sub(/^URIs:[ \t]*/,"",u); split(u,a,/[ \t]+/); print a[1]; exit } }' "$f")
    [ -n "$m" ] && { echo "$m"; return; }
  done
  grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\]//' | awk -v suite="$SUITE" '$3==suite{print $2; exit}'
}

MIRROR="${MIRROR:-$(host_mirror)}"
[ -n "$MIRROR" ] || { echo "no apt mirror for $SUITE found; set MIRROR=" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "apt-get install debootstrap" >&2; exit 1; }

mkdir -p "$OUT"
ROOT="$OUT/rootfs"
[ -e "$ROOT" ] && rm -rf --one-file-system "$ROOT"
T0=$(date +%s)

cleanup() {
  for m in var/cache/apt/archives dev/pts dev proc sys; do
    mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
  done
}
trap cleanup EXIT

CACHE_OPT=()
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then
  mkdir -p "$DEBOOTSTRAP_CACHE"; CACHE_OPT=(--cache-dir="$(cd "$DEBOOTSTRAP_CACHE" && pwd)")
fi

log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
debootstrap --variant=minbase "${CACHE_OPT[@]}" "$SUITE" "$ROOT" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 ||
  { tail -30 "$OUT/debootstrap.log"; exit 1; }
T1=$(date +%s)

# Never start services inside the chroot (invoke-rc.d honours policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"; mount -t sysfs sys "$ROOT/sys"
mount --bind /dev "$ROOT/dev"; mount --bind /dev/pts "$ROOT/dev/pts"
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
NODOC

log "apt-get install: $GUEST_DEBS"
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then
  mkdir -p "$DEBOOTSTRAP_CACHE/apt"; mount --bind "$DEBOOTSTRAP_CACHE/apt" "$ROOT/var/cache/apt/archives"
fi
# shellcheck disable=SC2086
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y --no-install-recommends \
  $GUEST_DEBS >"$OUT/apt.log" 2>&1 || { tail -30 "$OUT/apt.log"; exit 1; }
mountpoint -q "$ROOT/var/cache/apt/archives" && umount "$ROOT/var/cache/apt/archives"
chroot "$ROOT" apt-get clean

GPY=$(basename "$(ls -d "$ROOT"/usr/lib/python3.[0-9]* | sort -V | tail -1)")
HPY=$("$PIP" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
[ "$GPY" = "$HPY" ] || { echo "host $HPY vs guest $GPY: binary wheels would not match" >&2; exit 1; }
log "pip install --target guest $GPY: $GUEST_PIP_PKGS"
# shellcheck disable=SC2086
"$PIP" -m pip install -q --no-cache-dir --target "$ROOT/usr/local/lib/$GPY/dist-packages" $GUEST_PIP_PKGS \
  >"$OUT/pip.log" 2>&1 || { tail -20 "$OUT/pip.log"; exit 1; }
rm -rf "$ROOT"/var/lib/apt/lists/*_Packages "$ROOT"/var/lib/apt/lists/*_InRelease 2>/dev/null || true
T2=$(date +%s)

# Guest configuration ---------------------------------------------------------
echo guest >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 guest\n' >"$ROOT/etc/hosts"
printf '/dev/ubda / ext4 rw,noatime 0 1\n' >"$ROOT/etc/fstab"
echo 'InitiatorName=iqn.2004-10.com.example:guest-initiator' >"$ROOT/etc/iscsi/initiatorname.iscsi"
# No dmeventd/lvmpolld in the guest (no systemd): disable monitoring, keep udev sync.
sed -i -E 's/^([[:space:]]*)# monitoring = 1/\1monitoring = 0/' "$ROOT/etc/lvm/lvm.conf" || true
install -m 0755 "$HERE/guest-init.sh" "$ROOT/sbin/guest-init"
rm -f "$ROOT/usr/sbin/policy-rc.d"
cleanup

[ -x "$ROOT/usr/bin/linux.uml" ] || { echo "user-mode-linux did not install linux.uml" >&2; exit 1; }
# UML modules live in /usr/lib/uml/modules/VER; modprobe looks in /lib/modules/VER.
UMLVER=$(ls "$ROOT/usr/lib/uml/modules" | sort -V | tail -1)
mkdir -p "$ROOT/lib/modules"
[ -e "$ROOT/lib/modules/$UMLVER" ] || ln -s "/usr/lib/uml/modules/$UMLVER" "$ROOT/lib/modules/$UMLVER"
cp "$ROOT/usr/bin/linux.uml" "$OUT/linux.uml"
ROOTFS_MB=$(du -sm --one-file-system "$ROOT" | cut -f1)

log "mke2fs -d (no mount) -> root.img $IMG_SIZE"
rm -f "$OUT/root.img"
mke2fs -q -t ext4 -L guestroot -E root_owner=0:0 -d "$ROOT" "$OUT/root.img" "$IMG_SIZE"
T3=$(date +%s)
rm -rf --one-file-system "$ROOT"

cat >"$OUT/build.info" <<INFO
suite=$SUITE
uml_kernel=$UMLVER
rootfs_mb=$ROOTFS_MB
image_allocated=$(du -h "$OUT/root.img" | cut -f1)
t_debootstrap_s=$((T1-T0))
t_apt_pip_s=$((T2-T1))
t_image_s=$((T3-T2))
t_total_s=$((T3-T0))
debs=$(echo $GUEST_DEBS)
pip=$(echo $GUEST_PIP_PKGS)
INFO
log "done in $((T3-T0)) s: $OUT"
