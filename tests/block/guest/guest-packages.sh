# What goes into the test guest; sourced by build-guest.sh and hashed into the cache key by
# ensure-guest.sh (change a line here and the next run rebuilds the image).
# Debian: the kernel (user-mode-linux), LVM thin, LIO's rtslib-fb, open-iscsi, udev for /dev/disk/by-path,
# qemu-img (blockd converts qcow2/vmdk/... images into thin volumes with it).
GUEST_DEBS="user-mode-linux lvm2 thin-provisioning-tools python3-rtslib-fb open-iscsi python3
udev kmod iproute2 procps e2fsprogs util-linux lsscsi qemu-utils"
# PyPI, with the host's pip: blockd's own dependencies at the versions the host tests run with.
GUEST_PIP_PKGS="aiohttp==3.14.5 uvloop==0.23.0 msgpack==1.2.4 xxhash==4.1.0 pytest==9.2.0 pytest-timeout==2.4.0"
