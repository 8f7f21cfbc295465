/**
 * The kernel's vfio selftest library (tools/testing/selftests/vfio/lib: iommu.c, iova_allocator.c,
 * vfio_pci_device.c, vfio_pci_driver.c) over IommuSession, for the ports in test/vfio_*.test.ts:
 * `struct iommu` with its list of DMA regions, the IOVA allocator, `struct vfio_pci_device` (device
 * info, config space, every BAR's region info and an mmap of those with the MMAP flag, MSI and
 * MSI-X info and eventfds), the driver interface with an edu driver doing memcpy by DMA, and a
 * fixture that claims the edu and runs one TEST_F body per mode.
 *
 * The modes are the kernel's five and the library's re-expression (IOMMU_MODE_NAMES); a mode this
 * tier's machine cannot run skips with the reason in its title (never silently).
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, POLLIN, PROT_READ, PROT_WRITE, type Binding } from '../src/backends/types.js';
import type { EventFd } from '../src/device/eventfd.js';
import { PciDevice } from '../src/device/pci.js';
import type { RegionInfo } from '../src/device/region.js';
import {
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
} from '../src/device/uapi.js';
import type { DeviceInfo, IrqInfo, VfioDevice } from '../src/device/vfio_device.js';
import { isErrno } from '../src/ioasid/errors.js';
import type { IovaRange } from '../src/ioasid/ioas.js';
import { IOMMU_MODES, IommuSession, type IommuMode, type IommuModeName } from '../src/migration/modes.js';
import { missingFor } from './compat_modes.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { EDU_DMA_LIMIT, EDU_IRQ_DMA, EDU_MAX_CHUNK, EduDriver } from './drivers/edu.js';
import { BACKEND, U64_MAX } from './helpers.js';

/**
 * poll(2) on an eventfd for up to `timeoutMs`, as the C library does: these ports are synchronous,
 * like the C they port, so they block (the library's EventFd.wait() never does).
 */
export function pollEventfd(efd: EventFd, timeoutMs: number): boolean {
  return (efd.binding.poll(efd.fd, POLLIN, timeoutMs) & POLLIN) !== 0;
}

export const PAGE = 4096n;
export const SZ_2M = 2n << 20n;
export const SZ_1G = 1n << 30n;
/** PCI_STD_NUM_BARS */
const NUM_BARS = 6;

export const machine = deviceMachine();
/** The edu the ports drive (the VM's 00:01.0, alone in its IOMMU group): the selftests' device_bdf. */
export const deviceBdf = machine.soloEdu;
const soloGroup = deviceBdf ? new PciDevice(openBinding(BACKEND), deviceBdf).iommuGroup : null;

/** Why `mode` cannot run on this tier ('' when it can). */
export function modeSkip(mode: IommuMode): string {
  if (!deviceBdf) return machine.noSoloReason;
  return mode.compat ? missingFor(mode.compat, soloGroup) : '';
}

/** Every mode with its skip reason, for describe.each. */
export const MODES: readonly { name: IommuModeName; mode: IommuMode; skip: string }[] = IOMMU_MODES.map((mode) => ({
  name: mode.name, mode, skip: modeSkip(mode),
}));

/** A describe title: `fixture [mode] [tier]`, with ' (skipped: why)' when it cannot run. */
export function title(fixture: string, mode: IommuModeName, skip = ''): string {
  return `${fixture} [${mode}] [${BACKEND}]${skip ? ` (skipped: ${skip})` : ''}`;
}

// ---- iommu.c -----------------------------------------------------------------------------------

/** struct dma_region: process memory at `vaddr` mapped at `iova`. */
export interface DmaRegion {
  vaddr: bigint;
  iova: bigint;
  size: bigint;
}

/** struct iommu: the mode's session and the regions mapped through it (for iommu_hva2iova). */
export class Iommu {
  private regions: DmaRegion[] = [];

  private constructor(readonly session: IommuSession) {}

  /** iommu_init */
  static init(mode: IommuModeName): Iommu {
    return new Iommu(IommuSession.init(mode, BACKEND));
  }

  get mode(): IommuMode {
    return this.session.mode;
  }

  get binding(): Binding {
    return this.session.binding;
  }

  /** __iommu_map: MAP_DMA or IOMMU_IOAS_MAP (READ|WRITE, fixed IOVA); IommuError on a refusal. */
  map(region: DmaRegion): void {
    this.session.map({ vaddr: region.vaddr, iova: region.iova, size: region.size });
    this.regions.unshift(region);
  }

  /** __iommu_unmap of the region: the bytes unmapped. */
  unmap(region: DmaRegion): bigint {
    const unmapped = this.session.unmap({ iova: region.iova, size: region.size });
    this.regions = this.regions.filter((r) => r !== region);
    return unmapped;
  }

  /** __iommu_unmap_all: the bytes unmapped. */
  unmapAll(): bigint {
    const unmapped = this.session.unmapAll();
    this.regions = [];
    return unmapped;
  }

  /** __iommu_hva2iova: the IOVA a mapped address has, or null (-ENOENT). */
  hva2iova(vaddr: bigint): bigint | null {
    const r = this.regions.find((x) => vaddr >= x.vaddr && vaddr < x.vaddr + x.size);
    return r ? r.iova + (vaddr - r.vaddr) : null;
  }

  /** iommu_iova_ranges: sorted, at least one. */
  iovaRanges(): IovaRange[] {
    const ranges = this.session.iovaRanges();
    if (!ranges.length) throw new Error('iommu_iova_ranges: no IOVA range');
    return ranges;
  }

  /** iommu_cleanup */
  cleanup(): void {
    this.session.close();
  }
}

// ---- iova_allocator.c --------------------------------------------------------------------------

/** struct iova_allocator: a bump allocator over the IOVA ranges, each IOVA aligned to its size. */
export class IovaAllocator {
  private rangeIdx = 0;
  private rangeOffset = 0n;

  constructor(private readonly ranges: readonly IovaRange[]) {}

  /** iova_allocator_alloc: `size` a non-zero power of two. */
  alloc(size: bigint): bigint {
    if (size <= 0n || (size & (size - 1n)) !== 0n) throw new RangeError(`iova_allocator_alloc: size 0x${size.toString(16)}`);
    for (;;) {
      const range = this.ranges[this.rangeIdx];
      if (!range) throw new Error('IOVA allocator out of space');
      // Sufficient space at the current offset (u64 arithmetic: no wrap), then at the IOVA aligned to the size.
      let last = range.start + this.rangeOffset + size - 1n;
      const fits = (l: bigint): boolean => l <= U64_MAX && l <= range.last;
      if (fits(last)) {
        const iova = last & ~(size - 1n);
        last = iova + size - 1n;
        if (fits(last)) {
          if (last === range.last) {
            this.rangeIdx++;
            this.rangeOffset = 0n;
          } else {
            this.rangeOffset = last - range.start + 1n;
          }
          return iova;
        }
      }
      this.rangeIdx++;
      this.rangeOffset = 0n;
    }
  }
}

// ---- vfio_pci_device.c -------------------------------------------------------------------------

/** struct vfio_pci_bar: the region info, and the mmap of a BAR with the MMAP flag. */
export interface VfioPciBar {
  readonly info: RegionInfo;
  vaddr: bigint | null;
}

/**
 * mmap_reserve (libvfio.h): an address range of `size` bytes at `offset` modulo `align`,
 * reserved with an inaccessible anonymous mapping that MAP_FIXED then replaces.
 */
export function mmapReserve(b: Binding, size: bigint, align: bigint, offset: bigint): bigint {
  if (!(align > offset)) throw new RangeError('mmap_reserve: align must exceed offset');
  const delta = align - offset;
  const base = b.mmap(0n, Number(size + align), 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const aligned = ((base + delta + align - 1n) & ~(align - 1n)) - delta;
  if (aligned > base) b.munmap(base, Number(aligned - base));
  b.munmap(aligned + size, Number(base + align - aligned));
  return aligned;
}

/** struct vfio_pci_device: the device fd of one mode's session and what vfio_pci_device_setup read. */
export class VfioPciDevice {
  /** The device (device->fd). */
  readonly fd: VfioDevice;
  readonly info: DeviceInfo;
  readonly configSpace: RegionInfo;
  readonly bars: VfioPciBar[] = [];
  readonly msiInfo: IrqInfo;
  readonly msixInfo: IrqInfo;
  readonly msiEventfds: (EventFd | null)[] = new Array<EventFd | null>(16).fill(null);
  readonly driver: VfioPciDriver;

  /** vfio_pci_device_init: the mode's setup (group and container, or cdev bind and attach), then the device's. */
  constructor(
    readonly bdf: string,
    readonly iommu: Iommu,
  ) {
    this.fd = iommu.session.openDevice(bdf);
    const dev = this.fd;
    this.info = dev.info();
    this.configSpace = dev.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
    if (this.configSpace.flags & VFIO_REGION_INFO_FLAG_MMAP) throw new Error('PCI config space should not support mmap()');
    for (let i = 0; i < NUM_BARS; i++) {
      const bar: VfioPciBar = { info: dev.regionInfo(i), vaddr: null };
      this.bars.push(bar);
      if (bar.info.flags & VFIO_REGION_INFO_FLAG_MMAP) this.barMap(bar);
    }
    this.msiInfo = dev.irqInfo(VFIO_PCI_MSI_IRQ_INDEX);
    this.msixInfo = dev.irqInfo(VFIO_PCI_MSIX_IRQ_INDEX);
    this.driver = new VfioPciDriver(this);
  }

  get binding(): Binding {
    return this.iommu.binding;
  }

  /** vfio_pci_bar_map: the whole BAR, shared, at an address aligned to min(size, 1 GiB). */
  private barMap(bar: VfioPciBar): void {
    const size = bar.info.size;
    if (size & (size - 1n)) throw new Error(`BAR ${bar.info.index} size 0x${size.toString(16)} is not a power of two`);
    const prot = (bar.info.flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) | (bar.info.flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);
    const vaddr = mmapReserve(this.binding, size, size < SZ_1G ? size : SZ_1G, 0n);
    bar.vaddr = this.binding.mmap(vaddr, Number(size), prot, MAP_SHARED | MAP_FIXED, this.fd.fd, Number(bar.info.offset));
  }

  /** vfio_pci_config_readw / writew: 2-byte pread/pwrite at the config region. */
  configReadw(offset: number): number {
    return this.fd.region(VFIO_PCI_CONFIG_REGION_INDEX).read16(offset);
  }

  configWritew(offset: number, v: number): void {
    this.fd.region(VFIO_PCI_CONFIG_REGION_INDEX).write16(offset, v);
  }

  /** vfio_pci_irq_enable: a fresh eventfd per vector, then SET_IRQS DATA_EVENTFD | ACTION_TRIGGER. */
  irqEnable(index: number, vector: number, count: number): void {
    for (let i = vector; i < vector + count; i++) {
      if (this.msiEventfds[i]) throw new Error(`vector ${i} already has an eventfd`);
      this.msiEventfds[i] = this.fd.eventfd();
    }
    this.fd.enableIrq(index, this.msiEventfds.slice(vector, vector + count) as EventFd[], vector);
  }

  /** vfio_pci_irq_trigger: SET_IRQS DATA_NONE | ACTION_TRIGGER of one vector (loopback). */
  irqTrigger(index: number, vector: number): void {
    this.fd.triggerIrq(index, vector, 1);
  }

  /** vfio_pci_irq_disable: close every eventfd, then SET_IRQS with count 0. */
  irqDisable(index: number): void {
    this.closeEventfds();
    this.fd.disableIrq(index);
  }

  /** Close every vector's eventfd (what irqDisable does before SET_IRQS). */
  closeEventfds(): void {
    for (let i = 0; i < this.msiEventfds.length; i++) {
      this.msiEventfds[i]?.close();
      this.msiEventfds[i] = null;
    }
  }

  /** vfio_pci_device_reset: VFIO_DEVICE_RESET, retried while EAGAIN (20 times, 10 ms apart). */
  reset(): void {
    for (let retries = 20; ; retries--) {
      try {
        this.fd.reset();
        return;
      } catch (e) {
        if (!isErrno(e, 'EAGAIN') || retries <= 0) throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
    }
  }

  /** vfio_pci_device_cleanup: the driver removed, BARs unmapped, eventfds closed (the fds close with the session). */
  cleanup(): void {
    if (this.driver.initialized) this.driver.remove();
    for (const bar of this.bars) {
      if (bar.vaddr === null) continue;
      this.binding.munmap(bar.vaddr, Number(bar.info.size));
      bar.vaddr = null;
    }
    this.closeEventfds();
  }
}

// ---- vfio_pci_driver.c and an edu driver -------------------------------------------------------

/**
 * struct vfio_pci_driver with the edu as its device (lib/drivers has no edu driver; this is its
 * counterpart over test/drivers/edu.ts). memcpy_start copies src -> device buffer -> dst, one
 * chunk of at most EDU_MAX_CHUNK bytes (QEMU's edu buffer is 4 KiB, but its bounds check is off
 * by one and aborts the VM, so the driver uses its first half). Completion: by polling the DMA
 * command's start bit (the default, and the C's contract: the device raises no interrupt), or with
 * `completion = 'msi'` set before init() by edu's DMA-done interrupt on MSI vector `msi`, waited
 * for on its eventfd and acknowledged. send_msi writes IRQ_RAISE. edu cannot report DMA errors:
 * memcpy_wait answers 0.
 */
export class VfioPciDriver {
  readonly name = 'edu';
  initialized = false;
  memcpyInProgress = false;
  /** The driver's own DMA region (edu needs none, but init() wants it mapped, as the C asserts). */
  region: DmaRegion | null = null;
  readonly maxMemcpySize = BigInt(EDU_MAX_CHUNK);
  /** edu runs one transfer at a time. */
  readonly maxMemcpyCount = 1n;
  /** The MSI vector send_msi() fires. */
  readonly msi = 0;
  /** How memcpy_wait learns a transfer is done; read by init(). */
  completion: 'poll' | 'msi' = 'poll';
  /** probe(): an edu behind this device. */
  readonly ops: boolean;
  private edu: EduDriver | null = null;
  private readonly timeoutMs = 10_000;

  constructor(private readonly device: VfioPciDevice) {
    this.ops = EduDriver.probe(device.fd);
  }

  private check(op: string, isInit = false, isWait = false): EduDriver {
    if (!this.ops) throw new Error(`driver has no ${op}()`);
    if (this.initialized === isInit) throw new Error(`${op}: driver ${this.initialized ? 'already' : 'not'} initialized`);
    if (this.memcpyInProgress !== isWait) throw new Error(`${op}: a memcpy is ${this.memcpyInProgress ? '' : 'not '}in progress`);
    return (this.edu ??= new EduDriver(this.device.fd));
  }

  /** vfio_pci_driver_init: the device checked and bus mastering on, MSI vector `msi` to an eventfd. */
  init(): void {
    if (!this.region) throw new Error('vfio_pci_driver_init: driver region not set');
    const edu = this.check('init', true);
    edu.init();
    this.device.irqEnable(VFIO_PCI_MSI_IRQ_INDEX, this.msi, 1);
    // DMA commands then ask for the interrupt (the same eventfd, set again)
    if (this.completion === 'msi') edu.enableIrq('msi', this.device.msiEventfds[this.msi]!);
    this.initialized = true;
  }

  /** vfio_pci_driver_remove: edu's interrupts off, then MSI disabled at VFIO and its eventfd closed. */
  remove(): void {
    this.check('remove').remove();
    if (this.completion === 'msi') this.device.closeEventfds(); // edu's remove() disabled MSI already
    else this.device.irqDisable(VFIO_PCI_MSI_IRQ_INDEX);
    this.initialized = false;
  }

  /** The DMA-done interrupt: its eventfd fired; acknowledged at the device. */
  private waitMsi(edu: EduDriver): void {
    const efd = this.device.msiEventfds[this.msi]!;
    if (!pollEventfd(efd, this.timeoutMs)) throw new Error(`edu: no DMA-done MSI after ${this.timeoutMs} ms`);
    efd.read();
    edu.ackIrq(EDU_IRQ_DMA);
  }

  /** vfio_pci_driver_memcpy_start: the device reads [src, src + size) and writes [dst, dst + size). */
  memcpyStart(src: bigint, dst: bigint, size: bigint, count: bigint): void {
    if (size > this.maxMemcpySize || count > this.maxMemcpyCount) throw new RangeError(`memcpy of 0x${size.toString(16)} x ${count}`);
    const edu = this.check('memcpy_start');
    if (src + size > EDU_DMA_LIMIT || dst + size > EDU_DMA_LIMIT) throw new RangeError('edu reaches only 28 address bits');
    edu.startToDevice(src, Number(size));
    if (this.completion === 'msi') this.waitMsi(edu);
    edu.wait();
    edu.startToRam(dst, Number(size));
    this.memcpyInProgress = true;
  }

  /** vfio_pci_driver_memcpy_wait: 0 (edu reports no DMA error). */
  memcpyWait(): number {
    const edu = this.check('memcpy_wait', false, true);
    if (this.completion === 'msi') this.waitMsi(edu);
    edu.wait();
    this.memcpyInProgress = false;
    return 0;
  }

  /** vfio_pci_driver_memcpy: in chunks of at most maxMemcpySize, each waited for. */
  memcpy(src: bigint, dst: bigint, size: bigint): number {
    for (let offset = 0n; offset < size; ) {
      const chunk = size - offset < this.maxMemcpySize ? size - offset : this.maxMemcpySize;
      this.memcpyStart(src + offset, dst + offset, chunk, 1n);
      const ret = this.memcpyWait();
      if (ret) return ret;
      offset += chunk;
    }
    return 0;
  }

  /** vfio_pci_driver_send_msi: IRQ_RAISE, then the cause acknowledged at the device. */
  sendMsi(): void {
    const edu = this.check('send_msi');
    edu.sendIrq(1);
    edu.ackIrq(1);
  }
}

// ---- the fixture -------------------------------------------------------------------------------

/** What a TEST_F body gets: the mode's iommu and the device, set up fresh for each test. */
export interface VfioFixture {
  iommu: Iommu;
  device: VfioPciDevice;
}

/**
 * FIXTURE_SETUP / FIXTURE_TEARDOWN of the vfio selftests for one mode: the edu claimed for the
 * describe (other files use it too), then per test iommu_init + vfio_pci_device_init, and
 * vfio_pci_device_cleanup + iommu_cleanup after it. `setup`/`teardown` add the fixture's own.
 */
export function useVfio(mode: IommuModeName, hooks: { setup?: (f: VfioFixture) => void; teardown?: (f: VfioFixture) => void } = {}): VfioFixture {
  const f = {} as VfioFixture;
  let release = (): void => {};
  beforeAll(() => {
    release = claimDevices([deviceBdf!]);
  });
  afterAll(() => release());
  beforeEach(() => {
    f.iommu = Iommu.init(mode);
    try {
      f.device = new VfioPciDevice(deviceBdf!, f.iommu);
      hooks.setup?.(f);
    } catch (e) {
      f.iommu.cleanup();
      throw e;
    }
  });
  afterEach(() => {
    try {
      hooks.teardown?.(f);
    } finally {
      f.device?.cleanup();
      f.iommu.cleanup();
    }
  });
  return f;
}
