# Fact-finding probe for host safety (src/device/pci.ts bindDriver): what the VM's kernel shows of
# the host's use of its devices (mounts, swaps, consoles, block/net/tty classes, virtio 9p shares,
# modules) and what the driver core's bind/unbind files answer. Output: host-safety.vm-probe.txt.
# Run in the VM: bash scripts/vm/run-in-guest.sh -- /usr/bin/python3 test/host-safety.vm-probe.py
import os, errno

def log(*a):
    print(' '.join(str(x) for x in a), flush=True)

def attempt(f, *a):
    """f(*a), or 'ERR <errno name>' when the call fails."""
    try: return f(*a)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]

def _read(p):
    with open(p, 'rb') as f: return repr(f.read())
def _write(p, s):
    fd = os.open(p, os.O_WRONLY)
    try: return 'ok %d' % os.write(fd, s.encode())
    finally: os.close(fd)
rd = lambda p: attempt(_read, p)
rl = lambda p: attempt(os.readlink, p)
ls = lambda p: attempt(lambda: sorted(os.listdir(p)))
wr = lambda p, s: attempt(_write, p, s)

log('== /proc')
for p in ['/proc/sys/kernel/osrelease', '/proc/self/mountinfo', '/proc/swaps', '/proc/consoles', '/proc/modules']:
    log(p, rd(p))
rel = open('/proc/sys/kernel/osrelease').read().strip()
log('/lib/modules/' + rel, ls('/lib/modules/' + rel))
log('/sys/module (first 10)', ls('/sys/module')[:10] if isinstance(ls('/sys/module'), list) else ls('/sys/module'))
log('/sys/module/vfio_pci', ls('/sys/module/vfio_pci'))

log('== classes')
for c in ['block', 'net', 'tty', 'graphics', 'drm']:
    names = ls('/sys/class/' + c)
    log('/sys/class/' + c, names if not isinstance(names, list) else len(names), 'entries')
    if isinstance(names, list):
        for n in names:
            if c != 'tty' or n.startswith('ttyS') or n in ('console', 'tty0', 'hvc0'):
                log('  ', n, '->', rl('/sys/class/%s/%s' % (c, n)))
log('/sys/class/net/lo flags', rd('/sys/class/net/lo/flags'), 'operstate', rd('/sys/class/net/lo/operstate'))
log('/sys/block', ls('/sys/block'))

log('== virtio')
log('/sys/bus/virtio/drivers', ls('/sys/bus/virtio/drivers'))
for v in ls('/sys/bus/virtio/devices'):
    p = '/sys/bus/virtio/devices/' + v
    log(v, '->', rl(p))
    log('   ls', ls(p))
    for a in ['vendor', 'device', 'modalias', 'mount_tag', 'status', 'features']:
        log('  ', a, rd(p + '/' + a))
    log('   driver', rl(p + '/driver'), 'subsystem', rl(p + '/subsystem'))
for b in ['0000:00:03.0', '0000:00:04.0']:
    p = '/sys/bus/pci/devices/' + b
    log(b, 'ls', ls(p))
    log('  ', 'driver', rl(p + '/driver'), 'enable', rd(p + '/enable'), 'boot_vga', rd(p + '/boot_vga'))

log('== PCI drivers')
log('/sys/bus/pci/drivers', ls('/sys/bus/pci/drivers'))
log('vfio-pci dir', ls('/sys/bus/pci/drivers/vfio-pci'))
log('virtio-pci dir', ls('/sys/bus/pci/drivers/virtio-pci'))
log('no-such-driver bind', wr('/sys/bus/pci/drivers/no-such-driver/bind', '0000:00:01.0'))

E = '0000:00:01.0'
P = '/sys/bus/pci/devices/' + E
log('== bind files on edu', E, 'driver', rl(P + '/driver'), 'override', rd(P + '/driver_override'))
log('bind to vfio-pci while bound to it', wr('/sys/bus/pci/drivers/vfio-pci/bind', E))
log('unbind through virtio-pci (not its driver)', wr('/sys/bus/pci/drivers/virtio-pci/unbind', E))
log('unbind through vfio-pci', wr('/sys/bus/pci/drivers/vfio-pci/unbind', E), 'driver', rl(P + '/driver'))
log('bind virtio-pci with override vfio-pci', wr('/sys/bus/pci/drivers/virtio-pci/bind', E))
log('override virtio-pci', wr(P + '/driver_override', 'virtio-pci'))
log('bind virtio-pci (its probe on edu)', wr('/sys/bus/pci/drivers/virtio-pci/bind', E), 'driver', rl(P + '/driver'))
log('bind vfio-pci with override virtio-pci', wr('/sys/bus/pci/drivers/vfio-pci/bind', E))
log('override vfio-pci', wr(P + '/driver_override', 'vfio-pci'))
log('bind vfio-pci', wr('/sys/bus/pci/drivers/vfio-pci/bind', E), 'driver', rl(P + '/driver'), 'cdev', ls(P + '/vfio-dev'))
B = '0000:00:02.0'
log('bridge', B, 'override vfio-pci', wr('/sys/bus/pci/devices/%s/driver_override' % B, 'vfio-pci'))
log('bind vfio-pci to the bridge', wr('/sys/bus/pci/drivers/vfio-pci/bind', B), 'driver', rl('/sys/bus/pci/devices/%s/driver' % B))
log('clear override', wr('/sys/bus/pci/devices/%s/driver_override' % B, '\n'), rd('/sys/bus/pci/devices/%s/driver_override' % B))
