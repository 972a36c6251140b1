#!/bin/bash
# run-in-guest.sh SCRIPT [ARGS...] -- boots the test guest under User-Mode Linux, runs SCRIPT in it
# as root, streams its output and exits with its exit code.
#
# Adapted from the block-storage reference recipe. UML runs the guest kernel as an ordinary host
# process: no KVM, no loop devices, no host modules (the host kernel of the CI machine kind has no
# device-mapper or configfs; the guest's 6.1 kernel has both). The root disk is copy-on-write per run,
# so the cached image never changes; data disks are fresh sparse files.
#
#   GUEST_DIR=DIR        output of build-guest.sh (ensure-guest.sh prints it)       [required]
#   WORK=DIR             scratch dir for this run (default mktemp -d; removed after success)
#   GUEST_MEM=1024       MiB of guest memory (a file in /dev/shm or $TMPDIR)
#   GUEST_TIMEOUT=600    seconds before the guest's process group is killed (exit 124)
#   DATA_DISKS="8G"      sizes of fresh sparse data disks (/dev/ubdb, /dev/ubdc, ...)
#   SRC_DIR=DIR          host dir shared read-only at /mnt/src in the guest
# Inside the guest /mnt/host (the script's cwd) is WORK/share. Exit codes: the script's;
# 124 timeout; 125 the guest died without reporting.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
SCRIPT="$1"; shift
GUEST_DIR="$(cd "${GUEST_DIR:?set GUEST_DIR}" && pwd)"
AUTO_WORK=0; [ -n "${WORK:-}" ] || { WORK=$(mktemp -d -t shoal-guestrun.XXXXXX); AUTO_WORK=1; }
mkdir -p "$WORK"; WORK="$(cd "$WORK" && pwd)"
MEM="${GUEST_MEM:-1024}"
TIMEOUT="${GUEST_TIMEOUT:-600}"
DATA_DISKS="${DATA_DISKS:-8G}"
[ -f "$GUEST_DIR/root.img" ] && [ -x "$GUEST_DIR/linux.uml" ] || { echo "no guest in $GUEST_DIR" >&2; exit 2; }

SHARE="$WORK/share"
rm -rf "$SHARE"; mkdir -p "$SHARE"
cp "$SCRIPT" "$SHARE/run.sh"; chmod +x "$SHARE/run.sh"
if [ $# -gt 0 ]; then printf '%q ' "$@" >"$SHARE/args"; else : >"$SHARE/args"; fi

rm -f "$WORK/root.cow"
CMD=("$GUEST_DIR/linux.uml" "mem=${MEM}M" "umid=shoal$$" "uml_dir=$WORK"
     root=/dev/ubda rw init=/sbin/guest-init "ubd0=$WORK/root.cow,$GUEST_DIR/root.img")
IMGS=(); n=1
for sz in $DATA_DISKS; do
  img="$WORK/data$n.img"; rm -f "$img"; truncate -s "$sz" "$img"; IMGS+=("$img")
  CMD+=("ubd$n=$img"); n=$((n+1))
done
CMD+=("hostshare=$SHARE")
[ -n "${SRC_DIR:-}" ] && CMD+=("srcshare=$(cd "$SRC_DIR" && pwd)")
CMD+=(con=null con0=null,fd:1 ssl=null)
echo "run-in-guest: UML, work=$WORK" >&2

T0=$(date +%s.%N)
# Own process group (setsid): UML forks one host process per guest address space, and a timeout
# must stop all of them by the group id.
setsid "${CMD[@]}" </dev/null >>"$WORK/serial.log" 2>&1 &
VPID=$!
( while [ ! -e "$SHARE/output.log" ] && kill -0 "$VPID" 2>/dev/null; do sleep 0.2; done
  [ -e "$SHARE/output.log" ] && exec tail -n +1 -f --pid="$VPID" "$SHARE/output.log" ) &
TAILPID=$!
rm -f "$WORK/timed_out"
( end=$(( $(date +%s) + TIMEOUT ))
  while kill -0 "$VPID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$end" ]; then
      touch "$WORK/timed_out"; kill -TERM -- "-$VPID" 2>/dev/null; sleep 10; kill -KILL -- "-$VPID" 2>/dev/null; exit 0
    fi
    sleep 1
  done ) &
WDPID=$!
set +e
wait "$VPID"; wait "$WDPID" 2>/dev/null
set -e
kill -KILL -- "-$VPID" 2>/dev/null || true
wait "$TAILPID" 2>/dev/null || true
rm -f "$WORK/root.cow" "${IMGS[@]}"
WALL=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "run-in-guest: wall ${WALL}s; $(sed 's/^guest-init: //' "$SHARE/boot.txt" 2>/dev/null)" >&2
if [ -e "$WORK/timed_out" ]; then echo "run-in-guest: TIMEOUT after ${TIMEOUT}s" >&2; tail -20 "$WORK/serial.log" >&2; exit 124; fi
if [ ! -f "$SHARE/rc" ]; then
  echo "run-in-guest: the guest did not report an exit code; console ($WORK/serial.log):" >&2
  tail -40 "$WORK/serial.log" >&2
  exit 125
fi
RC=$(cat "$SHARE/rc")
if [ "$AUTO_WORK" = 1 ] && [ "$RC" = 0 ]; then rm -rf "$WORK"; else echo "run-in-guest: logs kept in $WORK" >&2; fi
exit "$RC"
