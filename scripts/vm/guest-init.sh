#!/bin/sh
# PID 1 of the test VM. The host's / is our read-only root (9p); results go to the writable
# "results" share. Runs results/cmd.sh, records its exit status, powers off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# devtmpfs has no /dev/fd links; bash process substitution and some tools need them.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
for i in 0 1 2; do [ -e /dev/std$(echo in out err | cut -d' ' -f$((i + 1))) ] || ln -s /proc/self/fd/$i /dev/std$(echo in out err | cut -d' ' -f$((i + 1))); done
mount -t tmpfs tmpfs /run
mkdir -p /run/results /run/hosttmp /run/home /run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /run/results
# Keep the host's /tmp reachable (a clone may live there) before hiding it under a tmpfs.
mount --bind /tmp /run/hosttmp 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
R=/run/results
# Reserve hugetlb pages for the selftests that mmap MAP_HUGETLB memory, as a kselftest run
# would (the kernel reserves none by default): dirty tracking's _huge variants need 128 MiB.
echo 96 > /proc/sys/vm/nr_hugepages
echo "hugetlb: $(grep HugePages_Free /proc/meminfo)" >> $R/guest.log
if command -v ip >/dev/null 2>&1; then ip link set lo up; fi

# Hand QEMU's edu device (1234:11e8) to vfio-pci, as a VFIO user would.
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
    echo vfio-pci > "$d/driver_override"
    echo "$(basename "$d")" > /sys/bus/pci/drivers_probe 2>/dev/null
    echo "edu $(basename "$d") -> $(basename "$(readlink "$d/driver" 2>/dev/null)")" >> $R/guest.log
  fi
done
ls /dev/iommu /dev/vfio /dev/vfio/devices >> $R/guest.log 2>&1

HOME=/run/home TMPDIR=/tmp /bin/sh $R/cmd.sh > $R/out.log 2>&1
echo $? > $R/rc
sync
echo o > /proc/sysrq-trigger
while :; do :; done
