#!/usr/bin/env node
/**
 * `ioasid demo [--backend sim|linux]`: the newcomer's tour of an IOAS. Opens an iommufd, allocates
 * an IOAS, maps memory at a fixed and at kernel-chosen IOVAs, prints the IOVA layout, unmaps, and
 * shows a refused request with its errno.
 */
import { Iommufd } from './ioasid/iommufd.js';
import { IommuError } from './ioasid/errors.js';
import type { BackendName } from './backends/types.js';

const hex = (v: bigint): string => '0x' + v.toString(16).padStart(12, '0');

function demo(backend: BackendName): void {
  console.log(`ioasid demo on the ${backend} backend\n`);
  using ctx = Iommufd.open({ backend });
  const ioas = ctx.allocIoas();
  console.log(`IOMMU_IOAS_ALLOC        -> IOAS id ${ioas.id}`);
  const { ranges, alignment } = ioas.iovaRanges();
  console.log(`IOMMU_IOAS_IOVA_RANGES  -> ${ranges.map((r) => `[${hex(r.start)}, ${hex(r.last)}]`).join(' ')}, alignment ${alignment}`);

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

  console.log('\nIOVA layout (areas this demo mapped):');
  console.log('  ' + ['memory', 'first IOVA', 'last IOVA', 'length', 'placed'].map((h, i) => h.padEnd([22, 16, 16, 8, 10][i]!)).join(''));
  for (const r of rows.sort((x, y) => (x.iova < y.iova ? -1 : 1))) {
    console.log('  ' + [r.what.padEnd(22), hex(r.iova).padEnd(16), hex(r.iova + r.length - 1n).padEnd(16), String(r.length).padEnd(8), r.how].join(''));
  }

  console.log('\nA refused request: map b again over the IOVAs of a');
  try {
    ioas.map(b, { iova: fixed + 4096n });
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    console.log(`  ${e.syscall} -> errno ${e.errno} (${e.code}): an existing IOVA cannot be replaced`);
  }
  console.log('And unmapping half of a (areas are never split):');
  try {
    ioas.unmap(fixed, 4096n);
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    console.log(`  ${e.syscall} -> errno ${e.errno} (${e.code})`);
  }

  console.log(`\nIOMMU_IOAS_UNMAP a      -> ${ioas.unmap(fixed, BigInt(a.length))} bytes`);
  console.log(`IOMMU_IOAS_UNMAP all    -> ${ioas.unmapAll()} bytes`);
  ioas.destroy();
  console.log(`IOMMU_DESTROY ${ioas.id}         -> ok`);
}

const args = process.argv.slice(2);
const cmd = args[0] ?? 'demo';
const bi = args.indexOf('--backend');
const backend = (bi >= 0 ? args[bi + 1] : process.env.IOASID_BACKEND ?? 'sim') as BackendName;
if (cmd === 'demo') demo(backend);
else {
  console.error('usage: ioasid demo [--backend sim|linux]');
  process.exit(2);
}
