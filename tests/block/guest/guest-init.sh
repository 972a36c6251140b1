#!/bin/bash
# Adapted from the block-storage reference recipe; installed in the guest as /sbin/guest-init (PID 1).
# guest-init.sh -- installed as /sbin/guest-init in the test guest and used as
# PID 1 (kernel cmdline init=/sbin/guest-init).  It brings up the minimum a
# block-storage test needs (proc/sys/dev, configfs, lo, udev), mounts the host
# 9p share "hostshare" on /mnt/host, runs /mnt/host/run.sh with the arguments
# stored in /mnt/host/args, writes /mnt/host/output.log and /mnt/host/rc, and
# powers the VM off.  An optional second share "src" (read-only project tree)
# is mounted on /mnt/src.  Works under QEMU (9p shares) and User-Mode Linux (hostfs).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

poweroff_now() { sync; echo o >/proc/sysrq-trigger; sleep 5; echo b >/proc/sysrq-trigger; sleep 10; }
trap poweroff_now EXIT

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys  || mount -t sysfs sysfs /sys
T_INIT=$(cut -d' ' -f1 /proc/uptime)
mountpoint -q /dev  || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
# devtmpfs lacks these (udev/systemd normally create them); bash <(...) needs /dev/fd
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs tmpfs /dev/shm
mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /run/lvm /run/lock/lvm /var/lock
mountpoint -q /tmp || mount -t tmpfs tmpfs /tmp
mount -o remount,rw / 2>/dev/null
modprobe configfs 2>/dev/null
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config 2>/dev/null
hostname guest
ip link set lo up

/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
# Coldplug only block devices (fast under TCG); devices added later are handled normally.
udevadm trigger --action=add --subsystem-match=block >/dev/null 2>&1
udevadm settle -t 30
# targetcli (not rtslib) asks the system D-Bus about tcmu "user:" backstores.
if [ -x /usr/bin/dbus-daemon ]; then mkdir -p /run/dbus; dbus-daemon --system --fork 2>/dev/null; fi

mkdir -p /mnt/host /mnt/src
# Under User-Mode Linux the host dirs come in as hostfs paths on the kernel command line
# (hostshare=/abs/path [srcshare=/abs/path]); under QEMU as 9p tags hostshare / src.
HOSTSHARE=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^hostshare=//p')
SRCSHARE=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^srcshare=//p')
if [ -n "$HOSTSHARE" ]; then
  mount -t hostfs -o "$HOSTSHARE" hostfs /mnt/host || { echo "guest-init: hostfs mount failed" >/dev/console; exit 1; }
  if [ -n "$SRCSHARE" ]; then mount -t hostfs -o "$SRCSHARE" hostfs /mnt/src && mount -o remount,ro /mnt/src; else rmdir /mnt/src; fi
else
  modprobe 9pnet_virtio 2>/dev/null
  if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostshare /mnt/host; then
    echo "guest-init: cannot mount 9p share 'hostshare'" >/dev/console
    exit 1
  fi
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src /mnt/src 2>/dev/null || rmdir /mnt/src
fi

# Whole disks other than the root disk, in order (/dev/vdb ... under QEMU, /dev/ubdb ... under UML).
ROOTDISK=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null); [ -n "$ROOTDISK" ] || ROOTDISK=$(basename "$(findmnt -no SOURCE /)")
TEST_DISKS=$(lsblk -dn -o NAME,TYPE | awk -v r="$ROOTDISK" '$2=="disk" && $1!=r {printf "/dev/%s ", $1}')
export TEST_DISKS
T_READY=$(cut -d' ' -f1 /proc/uptime)
{
  echo "guest-init: kernel $(uname -r), init started at ${T_INIT}s, ready at ${T_READY}s after boot, TEST_DISKS=$TEST_DISKS"
} | tee /mnt/host/boot.txt >/dev/console

cd /mnt/host || exit 1
ARGS=$(cat /mnt/host/args 2>/dev/null)
eval "set -- $ARGS"
chmod +x /mnt/host/run.sh 2>/dev/null
# Output goes to the share and to the serial console.
/mnt/host/run.sh "$@" 2>&1 </dev/null | tee /mnt/host/output.log >/dev/console
rc=${PIPESTATUS[0]}
echo "$rc" >/mnt/host/rc
echo "guest-init: script exit code $rc, uptime $(cut -d' ' -f1 /proc/uptime)s" >/dev/console
sync
cd /
umount /mnt/host 2>/dev/null
exit 0
