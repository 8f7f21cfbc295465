# Fact-finding probe for the sim's machine model: sysfs, driver_override, vfio cdev ioctls, edu registers.
import os, sys, fcntl, struct, errno, glob, json, time, mmap, ctypes
out = []
def log(*a):
    s = ' '.join(str(x) for x in a); out.append(s); print(s, flush=True)
def rd(p):
    try:
        with open(p, 'rb') as f: return f.read()
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def rt(p):
    r = rd(p); return repr(r.decode()) if isinstance(r, bytes) else r
def rl(p):
    try: return os.readlink(p)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def ls(p):
    try: return sorted(os.listdir(p))
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def wr(p, s):
    try:
        fd = os.open(p, os.O_WRONLY)
        try: n = os.write(fd, s.encode()); return 'ok %d' % n
        finally: os.close(fd)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def ioc(fd, req, buf):
    b = bytearray(buf)
    try:
        r = fcntl.ioctl(fd, req, b, True); return r, bytes(b)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno], bytes(b)
def iocint(fd, req, v=0):
    try: return fcntl.ioctl(fd, req, v)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def hexs(b): return b.hex() if isinstance(b, bytes) else b

D = '/sys/bus/pci/devices'
log('== sysfs before binding')
for d in sorted(os.listdir(D)):
    p = D + '/' + d
    log('DEV', d, 'link', rl(p))
    for a in ['vendor','device','class','subsystem_vendor','subsystem_device','revision','driver_override','irq','enable','local_cpus','numa_node','dma_mask_bits','consistent_dma_mask_bits','modalias','resource','msi_bus','broken_parity_status','d3cold_allowed','power_state','reset_method','ari_enabled','devspec','secondary_bus_number','subordinate_bus_number','max_link_speed','current_link_speed']:
        log('  ', a, rt(p + '/' + a))
    log('   iommu_group', rl(p + '/iommu_group'), 'driver', rl(p + '/driver'), 'iommu', rl(p + '/iommu'))
    log('   ls', ls(p))
    c = rd(p + '/config'); log('   config', len(c) if isinstance(c, bytes) else c, hexs(c[:256]) if isinstance(c, bytes) else '')
log('== groups')
for g in sorted(os.listdir('/sys/kernel/iommu_groups'), key=int):
    gp = '/sys/kernel/iommu_groups/' + g
    log('GROUP', g, ls(gp), 'devices', [(x, rl(gp + '/devices/' + x)) for x in ls(gp + '/devices')], 'type', rt(gp + '/type'), 'resv', rt(gp + '/reserved_regions'))
log('== misc')
for p in ['/sys/bus/pci', '/sys/bus/pci/drivers', '/sys/bus/pci/drivers/vfio-pci', '/sys/bus/pci/drivers/pcieport', '/sys/class/iommu', '/sys/class/iommu/dmar0', '/sys/class/iommu/dmar0/intel-iommu', '/sys/class/iommu/dmar0/devices', '/dev/vfio', '/dev/vfio/devices', '/sys/class/vfio-dev', '/sys/class/vfio', '/sys/devices/pci0000:00', '/sys/kernel/iommu_groups']:
    log('LS', p, ls(p))
for a in ['cap','ecap','version','address','domains_supported','domains_used']:
    log('dmar0', a, rt('/sys/class/iommu/dmar0/intel-iommu/' + a))
for x in ls('/sys/class/iommu/dmar0/devices') if isinstance(ls('/sys/class/iommu/dmar0/devices'), list) else []:
    log('  dmar dev', x, rl('/sys/class/iommu/dmar0/devices/' + x))
log('drivers_autoprobe', rt('/sys/bus/pci/drivers_autoprobe'))
for p in ['/sys/bus/pci/drivers_probe', '/sys/bus/pci/drivers/vfio-pci/bind', '/sys/bus/pci/drivers/vfio-pci/new_id']:
    try: st = os.stat(p); log('mode', p, oct(st.st_mode))
    except OSError as e: log('mode', p, e)
log('read drivers_probe', rt('/sys/bus/pci/drivers_probe'))

edus = [d for d in sorted(os.listdir(D)) if rd(D+'/'+d+'/vendor') == b'0x1234\n' and rd(D+'/'+d+'/device') == b'0x11e8\n']
others = [d for d in sorted(os.listdir(D)) if d not in edus]
log('EDUS', edus)
e0 = edus[0]
log('== driver_override / drivers_probe behaviour')
log('probe nonexistent', wr('/sys/bus/pci/drivers_probe', '0000:09:00.0'))
log('probe garbage', wr('/sys/bus/pci/drivers_probe', 'garbage'))
log('probe edu w/o override', wr('/sys/bus/pci/drivers_probe', e0), 'driver', rl(D+'/'+e0+'/driver'))
log('bind vfio-pci w/o override', wr('/sys/bus/pci/drivers/vfio-pci/bind', e0), 'driver', rl(D+'/'+e0+'/driver'))
log('override foo', wr(D+'/'+e0+'/driver_override', 'foo'), rt(D+'/'+e0+'/driver_override'))
log('probe with foo', wr('/sys/bus/pci/drivers_probe', e0 + '\n'), 'driver', rl(D+'/'+e0+'/driver'))
log('override empty', wr(D+'/'+e0+'/driver_override', ''), rt(D+'/'+e0+'/driver_override'))
log('override nl', wr(D+'/'+e0+'/driver_override', '\n'), rt(D+'/'+e0+'/driver_override'))
log('override with nl', wr(D+'/'+e0+'/driver_override', 'vfio-pci\n'), rt(D+'/'+e0+'/driver_override'))
log('override a\\nb', wr(D+'/'+e0+'/driver_override', 'vfio-pci\nxyz'), rt(D+'/'+e0+'/driver_override'))
bridges = [d for d in others if rd(D+'/'+d+'/class').startswith(b'0x0604')]
log('BRIDGES', bridges)
for b in bridges:
    log('bridge override', b, wr(D+'/'+b+'/driver_override', 'vfio-pci'), 'probe', wr('/sys/bus/pci/drivers_probe', b), 'driver', rl(D+'/'+b+'/driver'))
    wr(D+'/'+b+'/driver_override', '')
log('probe edu0', wr('/sys/bus/pci/drivers_probe', e0), 'driver', rl(D+'/'+e0+'/driver'))
log('  ls dev', ls(D+'/'+e0))
log('  vfio-dev', ls(D+'/'+e0+'/vfio-dev'))
for v in ls(D+'/'+e0+'/vfio-dev'):
    vp = D+'/'+e0+'/vfio-dev/'+v
    log('  ', v, ls(vp), 'dev', rt(vp+'/dev'), 'uevent', rt(vp+'/uevent'), 'device', rl(vp+'/device'), 'subsystem', rl(vp+'/subsystem'))
log('  /dev/vfio', ls('/dev/vfio'), ls('/dev/vfio/devices'), 'class', ls('/sys/class/vfio-dev'), [rl('/sys/class/vfio-dev/'+x) for x in ls('/sys/class/vfio-dev')])
for x in ls('/dev/vfio/devices'):
    st = os.stat('/dev/vfio/devices/'+x); log('  chr', x, os.major(st.st_rdev), os.minor(st.st_rdev), oct(st.st_mode))
for x in ls('/dev/vfio'):
    try: st = os.stat('/dev/vfio/'+x); log('  node', x, os.major(st.st_rdev), os.minor(st.st_rdev), oct(st.st_mode))
    except OSError as e: log('  node', x, e)
log('  drivers/vfio-pci', ls('/sys/bus/pci/drivers/vfio-pci'), rl('/sys/bus/pci/drivers/vfio-pci/'+e0))
log('  driver link', rl(D+'/'+e0+'/driver'), 'override', rt(D+'/'+e0+'/driver_override'))
log('override foo while bound', wr(D+'/'+e0+'/driver_override', 'foo'), 'probe', wr('/sys/bus/pci/drivers_probe', e0), 'driver', rl(D+'/'+e0+'/driver'))
log('bind while bound', wr('/sys/bus/pci/drivers/vfio-pci/bind', e0))
log('unbind', wr('/sys/bus/pci/drivers/vfio-pci/unbind', e0), 'driver', rl(D+'/'+e0+'/driver'), ls('/dev/vfio/devices'), ls('/dev/vfio'))
log('unbind again', wr('/sys/bus/pci/drivers/vfio-pci/unbind', e0))
log('unbind nonexistent', wr('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:09:00.0'))
log('bind via bind file w/ override foo', wr('/sys/bus/pci/drivers/vfio-pci/bind', e0), rl(D+'/'+e0+'/driver'))
wr(D+'/'+e0+'/driver_override', 'vfio-pci')
log('bind via bind file w/ override vfio-pci', wr('/sys/bus/pci/drivers/vfio-pci/bind', e0), rl(D+'/'+e0+'/driver'), ls('/dev/vfio/devices'))
for e in edus[1:]:
    log('bind', e, wr(D+'/'+e+'/driver_override', 'vfio-pci'), wr('/sys/bus/pci/drivers_probe', e), rl(D+'/'+e+'/driver'), ls(D+'/'+e+'/vfio-dev'))
log('  /dev/vfio', ls('/dev/vfio'), ls('/dev/vfio/devices'))
log('  drivers/vfio-pci', ls('/sys/bus/pci/drivers/vfio-pci'))
for g in sorted(os.listdir('/sys/kernel/iommu_groups'), key=int):
    log('GROUP', g, ls('/sys/kernel/iommu_groups/'+g+'/devices'))

def cdev_of(bdf): return '/dev/vfio/devices/' + ls(D+'/'+bdf+'/vfio-dev')[0]
VT = 0x3b
def V(n): return (VT << 8) | (100 + n)
GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS, RESET, HOT_RESET_INFO, HOT_RESET = V(7), V(8), V(9), V(10), V(11), V(12), V(13)
FEATURE, BIND, ATTACH, DETACH = V(17), V(18), V(19), V(20)
IOAS_ALLOC, IOVA_RANGES, IOAS_MAP, HWPT_ALLOC, GET_HW_INFO, DESTROY = 0x3b81, 0x3b84, 0x3b85, 0x3b89, 0x3b8a, 0x3b80

log('== vfio cdev on', e0)
vf = os.open(cdev_of(e0), os.O_RDWR)
log('get_info before bind', ioc(vf, GET_INFO, struct.pack('<IIIIII', 24, 0, 0, 0, 0, 0))[0])
log('region_info before bind', ioc(vf, GET_REGION_INFO, struct.pack('<IIIIQQ', 32, 0, 0, 0, 0, 0))[0])
try: log('pread before bind', os.pread(vf, 4, 7 << 40))
except OSError as e: log('pread before bind', errno.errorcode[e.errno])
try: log('pwrite before bind', os.pwrite(vf, b'\0\0\0\0', 7 << 40))
except OSError as e: log('pwrite before bind', errno.errorcode[e.errno])
log('unknown ioctl before bind', ioc(vf, V(30), b'\0' * 64)[0])
log('attach before bind', ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, 1, 0))[0])
try:
    m = mmap.mmap(vf, 4096, offset=0); log('mmap before bind ok')
except OSError as e: log('mmap before bind', errno.errorcode[e.errno])
ifd = os.open('/dev/iommu', os.O_RDWR)
efd = os.eventfd(0, os.EFD_NONBLOCK)
log('bind argsz 12', ioc(vf, BIND, struct.pack('<IIiIQ', 12, 0, ifd, 0, 0))[0])
log('bind flags 2', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 2, ifd, 0, 0))[0])
log('bind flags 1 (token)', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 1, ifd, 0, 0))[0])
log('bind fd -1', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 0, -1, 0, 0))[0])
log('bind eventfd', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 0, efd, 0, 0))[0])
log('bind fd 999', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 0, 999, 0, 0))[0])
log('bind argsz 32 nonzero tail', ioc(vf, BIND, struct.pack('<IIiIQQ', 32, 0, ifd, 0, 0, 1))[0])
r, b = ioc(vf, BIND, struct.pack('<IIiIQ', 24, 0, ifd, 0, 0)); devid = struct.unpack('<IIiIQ', b)[3]
log('bind ok', r, 'devid', devid)
log('bind again', ioc(vf, BIND, struct.pack('<IIiIQ', 24, 0, ifd, 0, 0))[0])
vf2 = os.open(cdev_of(e0), os.O_RDWR)
log('second open ok; bind on second fd', ioc(vf2, BIND, struct.pack('<IIiIQ', 24, 0, ifd, 0, 0))[0])
ifd2 = os.open('/dev/iommu', os.O_RDWR)
log('second fd bind other ictx', ioc(vf2, BIND, struct.pack('<IIiIQ', 24, 0, ifd2, 0, 0))[0])
os.close(vf2)
for argsz in (24, 16, 12, 8, 64):
    r, b = ioc(vf, GET_INFO, struct.pack('<IIIIII', argsz, 0, 0, 0, 0, 0) + b'\0' * 40)
    log('get_info argsz', argsz, r, struct.unpack('<IIIIII', b[:24]))
for i in range(11):
    r, b = ioc(vf, GET_REGION_INFO, struct.pack('<IIIIQQ', 32, 0xff, i, 0xff, 7, 7))
    log('region', i, r, struct.unpack('<IIIIQQ', b))
log('region argsz 16', ioc(vf, GET_REGION_INFO, struct.pack('<IIIIQQ', 16, 0, 0, 0, 0, 0)))
for i in range(7):
    r, b = ioc(vf, GET_IRQ_INFO, struct.pack('<IIII', 16, 0xff, i, 0xff))
    log('irq', i, r, struct.unpack('<IIII', b))
log('irq argsz 12', ioc(vf, GET_IRQ_INFO, struct.pack('<IIII', 12, 0, 0, 0)))
log('reset', iocint(vf, RESET, 0))
r, b = ioc(vf, HOT_RESET_INFO, struct.pack('<III', 12, 0, 0) + b'\0' * 64)
log('hot reset info (argsz 12)', r, hexs(b[:12]))
r, b = ioc(vf, HOT_RESET_INFO, struct.pack('<III', 76, 0, 0) + b'\0' * 64)
log('hot reset info (argsz 76)', r, hexs(b))
log('unknown ioctl after bind', ioc(vf, V(30), b'\0' * 64)[0])
log('feature probe 0', ioc(vf, FEATURE, struct.pack('<II', 8, (1 << 18) | (1 << 16) | 0))[0])
# config space
def pr(off, n):
    try: return os.pread(vf, n, off)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
def pw(off, data):
    try: return os.pwrite(vf, data, off)
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
C = 7 << 40
cfg = pr(C, 256); log('vconfig', hexs(cfg))
log('sysfs config', hexs(rd(D+'/'+e0+'/config')[:256]))
log('pread cfg 4096', hexs(pr(C, 4096)) if not isinstance(pr(C, 4096), bytes) else len(pr(C, 4096)))
log('pread cfg 0x100', pr(C + 0x100, 4), 'pread 0xfe 4', pr(C + 0xfe, 4), 'pread 0xfc 4', hexs(pr(C + 0xfc, 4)))
log('pread cfg at 0 size 1/2/3', hexs(pr(C, 1)), hexs(pr(C, 2)), hexs(pr(C, 3)))
log('pwrite vendor', pw(C, b'\xff\xff'), hexs(pr(C, 4)))
log('bar0 reg sysfs', hexs(rd(D+'/'+e0+'/config')[0x10:0x18]))
log('pwrite bar0 ffffffff', pw(C + 0x10, b'\xff\xff\xff\xff'), 'read', hexs(pr(C + 0x10, 4)), 'bar1', hexs(pr(C + 0x14, 4)))
log('phys bar0 after', hexs(rd(D+'/'+e0+'/config')[0x10:0x18]))
log('rom', pw(C + 0x30, b'\xff\xff\xff\xff'), hexs(pr(C + 0x30, 4)))
cmd = struct.unpack('<H', pr(C + 4, 2))[0]; log('cmd', hex(cmd), 'phys', hexs(rd(D+'/'+e0+'/config')[4:6]), 'status', hexs(pr(C + 6, 2)))
log('set BM', pw(C + 4, struct.pack('<H', cmd | 4)), hex(struct.unpack('<H', pr(C + 4, 2))[0]), 'phys', hexs(rd(D+'/'+e0+'/config')[4:6]))
log('set intx disable', pw(C + 4, struct.pack('<H', cmd | 4 | 0x400)), hex(struct.unpack('<H', pr(C + 4, 2))[0]), 'phys', hexs(rd(D+'/'+e0+'/config')[4:6]))
log('write cmd 4-byte', pw(C + 4, struct.pack('<I', cmd | 4)), hexs(pr(C + 4, 4)), 'phys', hexs(rd(D+'/'+e0+'/config')[4:8]))
log('cap ptr', hexs(pr(C + 0x34, 1)), 'msi cap', hexs(pr(C + 0x40, 16)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x40:0x50]))
log('int line/pin', hexs(pr(C + 0x3c, 2)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x3c:0x3e]))
log('write int line', pw(C + 0x3c, b'\x55'), hexs(pr(C + 0x3c, 2)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x3c:0x3e]))
log('write cacheline', pw(C + 0xc, b'\x10'), hexs(pr(C + 0xc, 4)), 'phys', hexs(rd(D+'/'+e0+'/config')[0xc:0x10]))
log('write unassigned 0x80', pw(C + 0x80, b'\x12\x34\x56\x78'), hexs(pr(C + 0x80, 4)))
log('write subsys 0x2c', pw(C + 0x2c, b'\x12\x34\x56\x78'), hexs(pr(C + 0x2c, 4)))
log('write msi flags', pw(C + 0x42, b'\x01\x00'), hexs(pr(C + 0x40, 16)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x40:0x50]))
log('write msi addr', pw(C + 0x44, b'\x00\x10\xe0\xfe'), hexs(pr(C + 0x40, 16)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x40:0x50]))
# BAR access
B = 0
log('bar0 id', hexs(pr(B, 4)), 'liv', pw(B + 4, struct.pack('<I', 0x12345678)), hexs(pr(B + 4, 4)))
log('bar0 read 2@0', hexs(pr(B, 2)), '1@0', hexs(pr(B, 1)), '8@0', hexs(pr(B, 8)), '3@1', hexs(pr(B + 1, 3)))
log('bar0 write 2@4', pw(B + 4, b'\x01\x00'), hexs(pr(B + 4, 4)))
log('fact', pw(B + 8, struct.pack('<I', 5)), 'status', hexs(pr(B + 0x20, 4))); time.sleep(0.05)
log('fact read', hexs(pr(B + 8, 4)), 'status', hexs(pr(B + 0x20, 4)))
log('dma regs', hexs(pr(B + 0x80, 8)), hexs(pr(B + 0x88, 8)), hexs(pr(B + 0x90, 8)), hexs(pr(B + 0x98, 8)), '0x84', hexs(pr(B + 0x84, 4)))
log('write src 4@0x80', pw(B + 0x80, struct.pack('<I', 0x11223344)), hexs(pr(B + 0x80, 8)))
log('write src 8@0x80', pw(B + 0x80, struct.pack('<Q', 0x1122334455667788)), hexs(pr(B + 0x80, 8)))
log('write src 2@0x80', pw(B + 0x80, b'\x01\x02'), hexs(pr(B + 0x80, 8)))
log('buf 0x40000', hexs(pr(B + 0x40000, 8)), 'unknown 0x100', hexs(pr(B + 0x100, 4)), 'end', hexs(pr(B + 0xffffc, 4)))
log('read past end', pr(B + 0x100000, 4), 'straddle', hexs(pr(B + 0xffffe, 4)) if isinstance(pr(B + 0xffffe, 4), bytes) else pr(B + 0xffffe, 4))
log('bar1', pr(1 << 40, 4), 'rom', pr(6 << 40, 4), 'vga', pr(8 << 40, 4), 'idx9', pr(9 << 40, 4), 'idx 20', pr(20 << 40, 4))
log('irq status', hexs(pr(B + 0x24, 4)))
log('mem disable', pw(C + 4, struct.pack('<H', 4)), 'bar read', pr(B, 4), 'cmd', hexs(pr(C + 4, 2)))
log('mem enable', pw(C + 4, struct.pack('<H', 6)), 'bar read', hexs(pr(B, 4)))
# IRQs
def set_irqs(flags, index, start, count, data=b''):
    return ioc(vf, SET_IRQS, struct.pack('<IIIII', 20 + len(data), flags, index, start, count) + data)[0]
def efread(fd):
    try: return struct.unpack('<Q', os.read(fd, 8))[0]
    except OSError as e: return 'ERR ' + errno.errorcode[e.errno]
NONE, BOOL, EVFD, MASK, UNMASK, TRIG = 1, 2, 4, 8, 16, 32
e1 = os.eventfd(0, os.EFD_NONBLOCK)
log('intx trig none before enable', set_irqs(NONE | TRIG, 0, 0, 1))
log('intx mask before enable', set_irqs(NONE | MASK, 0, 0, 1))
log('intx disable before enable', set_irqs(NONE | TRIG, 0, 0, 0))
log('bad flags two data', set_irqs(NONE | BOOL | TRIG, 0, 0, 1, b'\1'))
log('bad flags two actions', set_irqs(NONE | TRIG | MASK, 0, 0, 1))
log('no action', set_irqs(NONE, 0, 0, 1))
log('unknown flag', set_irqs(NONE | TRIG | 64, 0, 0, 1))
log('index 5', set_irqs(NONE | TRIG, 5, 0, 1))
log('intx count 2', set_irqs(EVFD | TRIG, 0, 0, 2, struct.pack('<ii', e1, e1)))
log('intx start 1', set_irqs(EVFD | TRIG, 0, 1, 1, struct.pack('<i', e1)))
log('intx evfd short argsz', ioc(vf, SET_IRQS, struct.pack('<IIIII', 20, EVFD | TRIG, 0, 0, 1) + struct.pack('<i', e1))[0])
log('intx evfd bad fd', set_irqs(EVFD | TRIG, 0, 0, 1, struct.pack('<i', 999)))
log('intx evfd not eventfd', set_irqs(EVFD | TRIG, 0, 0, 1, struct.pack('<i', ifd)))
log('intx enable', set_irqs(EVFD | TRIG, 0, 0, 1, struct.pack('<i', e1)), efread(e1))
log('intx loop none', set_irqs(NONE | TRIG, 0, 0, 1), efread(e1))
log('intx loop bool 1', set_irqs(BOOL | TRIG, 0, 0, 1, b'\1'), efread(e1))
log('intx mask', set_irqs(NONE | MASK, 0, 0, 1), 'loop', set_irqs(NONE | TRIG, 0, 0, 1), efread(e1))
log('intx unmask', set_irqs(NONE | UNMASK, 0, 0, 1), efread(e1))
log('intx mask evfd', set_irqs(EVFD | MASK, 0, 0, 1, struct.pack('<i', e1)))
log('edu raise (intx)', pw(B + 0x60, struct.pack('<I', 1)), time.sleep(0.05), efread(e1), 'irqstat', hexs(pr(B + 0x24, 4)), 'cmd', hexs(pr(C + 4, 2)), 'phys cmd', hexs(rd(D+'/'+e0+'/config')[4:6]))
log('edu raise again while masked(auto)', pw(B + 0x60, struct.pack('<I', 2)), time.sleep(0.05), efread(e1))
log('edu ack', pw(B + 0x64, struct.pack('<I', 3)), 'unmask', set_irqs(NONE | UNMASK, 0, 0, 1), time.sleep(0.05), efread(e1))
log('edu raise after unmask', pw(B + 0x60, struct.pack('<I', 1)), time.sleep(0.05), efread(e1)); pw(B + 0x64, struct.pack('<I', 0xffffffff)); set_irqs(NONE | UNMASK, 0, 0, 1)
log('msi while intx', set_irqs(EVFD | TRIG, 1, 0, 1, struct.pack('<i', e1)))
log('intx deassign fd -1', set_irqs(EVFD | TRIG, 0, 0, 1, struct.pack('<i', -1)), 'loop', set_irqs(NONE | TRIG, 0, 0, 1), efread(e1))
log('intx disable', set_irqs(NONE | TRIG, 0, 0, 0))
log('intx disable again', set_irqs(NONE | TRIG, 0, 0, 0))
e2 = os.eventfd(0, os.EFD_NONBLOCK)
log('msi count 2', set_irqs(EVFD | TRIG, 1, 0, 2, struct.pack('<ii', e2, e2)))
log('msi loop before enable', set_irqs(NONE | TRIG, 1, 0, 1))
log('msi enable', set_irqs(EVFD | TRIG, 1, 0, 1, struct.pack('<i', e2)), efread(e2), 'msi cap', hexs(pr(C + 0x40, 16)), 'phys', hexs(rd(D+'/'+e0+'/config')[0x40:0x50]))
log('msi loop', set_irqs(NONE | TRIG, 1, 0, 1), efread(e2))
log('msi mask', set_irqs(NONE | MASK, 1, 0, 1))
log('edu raise (msi)', pw(B + 0x60, struct.pack('<I', 1)), time.sleep(0.05), efread(e2))
log('edu raise (msi) again no ack', pw(B + 0x60, struct.pack('<I', 1)), time.sleep(0.05), efread(e2)); pw(B + 0x64, struct.pack('<I', 0xffffffff))
log('intx while msi', set_irqs(EVFD | TRIG, 0, 0, 1, struct.pack('<i', e1)))
log('msi reassign same', set_irqs(EVFD | TRIG, 1, 0, 1, struct.pack('<i', e1)), set_irqs(NONE | TRIG, 1, 0, 1), efread(e1), efread(e2))
log('msi fd -1', set_irqs(EVFD | TRIG, 1, 0, 1, struct.pack('<i', -1)), set_irqs(NONE | TRIG, 1, 0, 1), efread(e1))
log('msi disable', set_irqs(NONE | TRIG, 1, 0, 0), 'msi cap', hexs(pr(C + 0x40, 16)))
log('msix any', set_irqs(NONE | TRIG, 2, 0, 0), set_irqs(EVFD | TRIG, 2, 0, 1, struct.pack('<i', e1)))
log('err trig none no fd', set_irqs(NONE | TRIG, 3, 0, 1))
log('err evfd', set_irqs(EVFD | TRIG, 3, 0, 1, struct.pack('<i', e1)), 'loop', set_irqs(NONE | TRIG, 3, 0, 1), efread(e1), 'bool', set_irqs(BOOL | TRIG, 3, 0, 1, b'\1'), efread(e1))
log('err mask', set_irqs(NONE | MASK, 3, 0, 1), 'count0 none', set_irqs(NONE | TRIG, 3, 0, 0), 'loop after', set_irqs(NONE | TRIG, 3, 0, 1))
log('req evfd', set_irqs(EVFD | TRIG, 4, 0, 1, struct.pack('<i', e1)), 'loop', set_irqs(NONE | TRIG, 4, 0, 1), efread(e1), 'fd -1', set_irqs(EVFD | TRIG, 4, 0, 1, struct.pack('<i', -1)), 'fd -2', set_irqs(EVFD | TRIG, 4, 0, 1, struct.pack('<i', -2)))
# iommufd side
r, b = ioc(ifd, IOAS_ALLOC, struct.pack('<III', 12, 0, 0)); ioas = struct.unpack('<III', b)[2]; log('ioas', r, ioas)
log('attach argsz 8', ioc(vf, ATTACH, struct.pack('<IIII', 8, 0, ioas, 0))[0])
log('attach flags 2', ioc(vf, ATTACH, struct.pack('<IIII', 16, 2, ioas, 0))[0])
log('attach pasid argsz 12', ioc(vf, ATTACH, struct.pack('<IIII', 12, 1, ioas, 1))[0])
log('attach pasid', ioc(vf, ATTACH, struct.pack('<IIII', 16, 1, ioas, 1))[0])
log('attach bad id', ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, 9999, 0))[0])
log('attach devid as pt', ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, devid, 0))[0])
r, b = ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, ioas, 0)); log('attach', r, struct.unpack('<IIII', b))
r, b = ioc(vf, ATTACH, struct.pack('<IIII', 12, 0, ioas, 0)); log('attach again (replace) argsz 12', r, struct.unpack('<IIII', b))
rng = bytearray(16 * 8)
buf = ctypes.create_string_buffer(16 * 16)
r, b = ioc(ifd, IOVA_RANGES, struct.pack('<IIIIQQ', 32, ioas, 16, 0, ctypes.addressof(buf), 0))
n = struct.unpack('<IIIIQQ', b)[2]; log('iova ranges', r, 'num', n, 'align', hex(struct.unpack('<IIIIQQ', b)[5]), [(hex(a), hex(z)) for a, z in struct.iter_unpack('<QQ', buf.raw[:16 * min(n, 16)])])
hw = ctypes.create_string_buffer(64)
r, b = ioc(ifd, GET_HW_INFO, struct.pack('<IIIIQIBBBBQ', 40, 0, devid, 64, ctypes.addressof(hw), 0, 0, 0, 0, 0, 0))
f = struct.unpack('<IIIIQIBBBBQ', b); log('hw_info', r, 'data_len', f[3], 'type', f[5], 'max_pasid', f[6], 'caps', hex(f[10]), 'data', hw.raw[:f[3]].hex(), 'vtd', [hex(x) for x in struct.unpack('<IIQQ', hw.raw[:24])])
for fl in (1, 2, 4, 8):
    r, b = ioc(ifd, HWPT_ALLOC, struct.pack('<IIIIIIIIQII', 48, fl, devid, ioas, 0, 0, 0, 0, 0, 0, 0))
    log('hwpt alloc flags', fl, r, struct.unpack('<IIIIIIIIQII', b)[4])
r, b = ioc(ifd, HWPT_ALLOC, struct.pack('<IIIIIIIIQII', 48, 0, devid, ioas, 0, 0, 0, 0, 0, 0, 0)); hwpt = struct.unpack('<IIIIIIIIQII', b)[4]
log('hwpt alloc 0', r, hwpt)
r, b = ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, hwpt, 0)); log('attach hwpt', r, struct.unpack('<IIII', b))
log('detach argsz 4', ioc(vf, DETACH, struct.pack('<III', 4, 0, 0))[0])
log('detach flags 2', ioc(vf, DETACH, struct.pack('<III', 12, 2, 0))[0])
log('detach pasid 1 (not attached)', ioc(vf, DETACH, struct.pack('<III', 12, 1, 1))[0])
log('detach', ioc(vf, DETACH, struct.pack('<III', 8, 0, 0))[0], 'again', ioc(vf, DETACH, struct.pack('<III', 8, 0, 0))[0])
log('destroy hwpt', ioc(ifd, DESTROY, struct.pack('<II', 8, hwpt))[0])
# DMA through edu at a mapped IOVA (small, < 2048 bytes), to learn timing and cmd behaviour.
r, b = ioc(vf, ATTACH, struct.pack('<IIII', 16, 0, ioas, 0)); log('re-attach', r)
src = mmap.mmap(-1, 8192); src[:16] = bytes(range(16)); a = ctypes.addressof(ctypes.c_char.from_buffer(src))
log('map', ioc(ifd, IOAS_MAP, struct.pack('<IIIIQQQ', 40, 1 | 2 | 4, ioas, 0, a, 8192, 0x100000))[0])
pw(C + 4, struct.pack('<H', 6))
log('dma with BM off: src', pw(B + 0x80, struct.pack('<Q', 0x100000)), 'dst', pw(B + 0x88, struct.pack('<Q', 0x40000)), 'cnt', pw(B + 0x90, struct.pack('<Q', 16)), 'cmd', pw(B + 0x98, struct.pack('<Q', 1)))
t0 = time.time()
while struct.unpack('<Q', pr(B + 0x98, 8))[0] & 1: time.sleep(0.005)
log('  done after', round(time.time() - t0, 3), 's')
log('  now device->RAM to 0x100800 (BM on)', pw(C + 4, struct.pack('<H', 6 | 4)), pw(B + 0x80, struct.pack('<Q', 0x40000)), pw(B + 0x88, struct.pack('<Q', 0x100800)), pw(B + 0x90, struct.pack('<Q', 16)), pw(B + 0x98, struct.pack('<Q', 3)))
while struct.unpack('<Q', pr(B + 0x98, 8))[0] & 1: time.sleep(0.005)
log('  RAM got (BM-off read result)', src[0x800:0x810].hex())
log('  RAM->dev with BM on', pw(B + 0x80, struct.pack('<Q', 0x100000)), pw(B + 0x88, struct.pack('<Q', 0x40000)), pw(B + 0x90, struct.pack('<Q', 16)), pw(B + 0x98, struct.pack('<Q', 1)))
log('  cmd while running', hexs(pr(B + 0x98, 8)), 'write src while running', pw(B + 0x80, struct.pack('<Q', 0x5000)), hexs(pr(B + 0x80, 8)))
while struct.unpack('<Q', pr(B + 0x98, 8))[0] & 1: time.sleep(0.005)
pw(B + 0x80, struct.pack('<Q', 0x40000)); pw(B + 0x88, struct.pack('<Q', 0x101000)); pw(B + 0x98, struct.pack('<Q', 3 | 4))
while struct.unpack('<Q', pr(B + 0x98, 8))[0] & 1: time.sleep(0.005)
log('  round trip', src[0x1000:0x1010].hex(), 'cmd after', hexs(pr(B + 0x98, 8)), 'irqstat', hexs(pr(B + 0x24, 4)))
os.close(vf)
log('after close: phys cmd', hexs(rd(D+'/'+e0+'/config')[4:6]))

log('== shared group devices')
if len(edus) >= 3:
    va, vb = os.open(cdev_of(edus[1]), os.O_RDWR), os.open(cdev_of(edus[2]), os.O_RDWR)
    i1, i2 = os.open('/dev/iommu', os.O_RDWR), os.open('/dev/iommu', os.O_RDWR)
    r, b = ioc(va, BIND, struct.pack('<IIiIQ', 24, 0, i1, 0, 0)); log('bind a', r, struct.unpack('<IIiIQ', b)[3])
    r, b = ioc(vb, BIND, struct.pack('<IIiIQ', 24, 0, i2, 0, 0)); log('bind b other ictx', r)
    r, b = ioc(vb, BIND, struct.pack('<IIiIQ', 24, 0, i1, 0, 0)); log('bind b same ictx', r, struct.unpack('<IIiIQ', b)[3])
    r, b = ioc(va, GET_INFO, struct.pack('<IIIIII', 24, 0, 0, 0, 0, 0)); log('info a', r, struct.unpack('<IIIIII', b))
    r, b = ioc(va, HOT_RESET_INFO, struct.pack('<III', 76, 0, 0) + b'\0' * 64); log('hot reset info a', r, hexs(b))
    r, b = ioc(i1, IOAS_ALLOC, struct.pack('<III', 12, 0, 0)); io1 = struct.unpack('<III', b)[2]
    r, b = ioc(i1, IOAS_ALLOC, struct.pack('<III', 12, 0, 0)); io2 = struct.unpack('<III', b)[2]
    r, b = ioc(va, ATTACH, struct.pack('<IIII', 16, 0, io1, 0)); log('attach a io1', r, struct.unpack('<IIII', b))
    r, b = ioc(vb, ATTACH, struct.pack('<IIII', 16, 0, io2, 0)); log('attach b io2 (other domain same group)', r, struct.unpack('<IIII', b))
    r, b = ioc(vb, ATTACH, struct.pack('<IIII', 16, 0, io1, 0)); log('attach b io1', r, struct.unpack('<IIII', b))
    log('unbind a while open', wr('/sys/bus/pci/drivers/vfio-pci/unbind', edus[2]) if False else 'skipped (blocks)')
    os.close(va); os.close(vb)
    cfgb = rd(D+'/'+edus[1]+'/config'); log('cfg size behind bridge', len(cfgb) if isinstance(cfgb, bytes) else cfgb)
log('== done')
with open('/run/results/probe.txt', 'w') as f: f.write('\n'.join(out) + '\n')
