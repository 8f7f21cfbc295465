/**
 * The newcomer's tour (`ioasid demo [--backend sim|linux] [--machine PRESET]`, `npm run demo`). First an IOAS: allocate it, map memory
 * at a fixed and at kernel-chosen IOVAs, print the IOVA layout, unmap, and show a refused request
 * with its errno. Then a device: QEMU's edu (on the sim, the simulated machine's) bound through its
 * VFIO cdev, attached to an IOAS, copying bytes by DMA through the IOMMU, and failing to write
 * where nothing (or only read-only memory) is mapped.
 */
import { findPciDevices } from './device/pci.js';
import { VfioDevice, type VfioRegion } from './device/index.js';
import { Iommufd } from './ioasid/iommufd.js';
import { IommuError } from './ioasid/errors.js';
import type { BackendName, Binding } from './backends/types.js';
import type { SimOptions } from './backends/sim/index.js';

const hex = (v: bigint): string => '0x' + v.toString(16).padStart(12, '0');

/** The tour on `backend`; `sim` chooses the sim's machine (default: the test VM's, q35Edu). */
export function demo(backend: BackendName, log: (line: string) => void = console.log, sim?: SimOptions): void {
  log(`ioasid demo on the ${backend} backend${sim?.machine ? ` (machine ${sim.machine.name})` : ''}\n`);
  using ctx = Iommufd.open({ backend, sim });
  const ioas = ctx.allocIoas();
  log(`IOMMU_IOAS_ALLOC        -> IOAS id ${ioas.id}`);
  const { ranges, alignment } = ioas.iovaRanges();
  log(`IOMMU_IOAS_IOVA_RANGES  -> ${ranges.map((r) => `[${hex(r.start)}, ${hex(r.last)}]`).join(' ')}, alignment ${alignment}`);

  using a = ctx.mmap(64 * 1024);
  using b = ctx.mmap(4096);
  using c = ctx.mmap(3 * 4096);
  a.bytes.fill(0xaa);
  const rows: { what: string; iova: bigint; length: bigint; how: string }[] = [];
  const fixed = ioas.map(a, { iova: 0x100000n });
  rows.push({ what: 'a (64 KiB)', iova: fixed, length: BigInt(a.length), how: 'FIXED_IOVA' });
  const autoB = ioas.map(b);
  rows.push({ what: 'b (4 KiB)', iova: autoB, length: BigInt(b.length), how: 'auto' });
  const autoC = ioas.map(c, { writeable: false });
  rows.push({ what: 'c (12 KiB, read-only)', iova: autoC, length: BigInt(c.length), how: 'auto' });

  log('\nIOVA layout (areas this demo mapped):');
  log('  ' + ['memory', 'first IOVA', 'last IOVA', 'length', 'placed'].map((h, i) => h.padEnd([22, 16, 16, 8, 10][i]!)).join(''));
  for (const r of rows.sort((x, y) => (x.iova < y.iova ? -1 : 1))) {
    log('  ' + [r.what.padEnd(22), hex(r.iova).padEnd(16), hex(r.iova + r.length - 1n).padEnd(16), String(r.length).padEnd(8), r.how].join(''));
  }

  log('\nA refused request: map b again over the IOVAs of a');
  try {
    ioas.map(b, { iova: fixed + 4096n });
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    log(`  ${e.syscall} -> errno ${e.errno} (${e.code}): an existing IOVA cannot be replaced`);
  }
  log('And unmapping half of a (areas are never split):');
  try {
    ioas.unmap(fixed, 4096n);
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    log(`  ${e.syscall} -> errno ${e.errno} (${e.code})`);
  }

  log(`\nIOMMU_IOAS_UNMAP a      -> ${ioas.unmap(fixed, BigInt(a.length))} bytes`);
  log(`IOMMU_IOAS_UNMAP all    -> ${ioas.unmapAll()} bytes`);
  ioas.destroy();
  log(`IOMMU_DESTROY ${ioas.id}         -> ok`);
  // a second /dev/iommu of the same host (on the sim, the same machine rather than a second one)
  deviceDemo(ctx.binding, log);
}

/** edu's DMA engine (BAR0): source, destination, count, command; start bit 0, to-RAM bit 1. */
function eduDma(bar: VfioRegion, src: bigint, dst: bigint, count: number, toRam: boolean): void {
  bar.write64(0x80, src);
  bar.write64(0x88, dst);
  bar.write64(0x90, BigInt(count));
  bar.write64(0x98, toRam ? 3n : 1n);
  const t0 = Date.now();
  while (bar.read64(0x98) & 1n) if (Date.now() - t0 > 5000) throw new Error('edu: DMA did not finish');
}

function deviceDemo(binding: Binding, log: (line: string) => void): void {
  using ctx = Iommufd.open({ backend: binding });
  const edu = findPciDevices(ctx.binding, { vendor: 0x1234, device: 0x11e8 }).find((d) => d.vfioCdev !== null);
  log("\nA device: QEMU's edu through its VFIO cdev");
  if (!edu) {
    log('  (no edu bound to vfio-pci on this machine: nothing more to show)');
    return;
  }
  using dev = VfioDevice.open(ctx.binding, edu);
  const devId = dev.bind(ctx);
  const ioas = ctx.allocIoas();
  const hwpt = dev.attach(ioas);
  log(`  ${edu.bdf} (IOMMU group ${edu.iommuGroup}) ${edu.vfioCdev}: device id ${devId}, automatic HWPT ${hwpt}`);
  const { ranges } = ioas.iovaRanges();
  log(`  the IOAS narrowed to what the IOMMU translates: ${ranges.map((r) => `[${hex(r.start)}, ${hex(r.last)}]`).join(' ')}`);
  using src = ctx.mmap(4096);
  using dst = ctx.mmap(4096);
  const text = new TextEncoder().encode('bytes that went RAM -> device -> RAM through the IOMMU');
  src.bytes.set(text);
  const s = ioas.map(src, { iova: 0x100000n, writeable: false });
  const d = ioas.map(dst, { iova: 0x200000n });
  dev.config.busMaster = true;
  const bar = dev.region(0);
  const buf = 0x40000n; // edu's internal buffer
  eduDma(bar, s, buf, text.length, false);
  eduDma(bar, buf, d, text.length, true);
  log(`  DMA ${hex(s)} -> edu -> ${hex(d)}: "${new TextDecoder().decode(dst.bytes.subarray(0, text.length))}"`);
  dst.bytes.fill(0);
  eduDma(bar, buf, 0x300000n, text.length, true);
  eduDma(bar, buf, s, text.length, true);
  const untouched = dst.bytes.every((x) => x === 0) && new TextDecoder().decode(src.bytes.subarray(0, text.length)) === new TextDecoder().decode(text);
  log(`  DMA to an unmapped IOVA and to the read-only one: ${untouched ? 'no byte of memory changed (the IOMMU faulted them)' : 'MEMORY CHANGED'}`);
  dev.config.busMaster = false;
}

