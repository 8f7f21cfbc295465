/**
 * The README's first command (`npm run demo`) does what it says on the tier's backend: the IOAS
 * tour, then edu copying bytes by DMA through the IOMMU and failing to write where nothing, or
 * only read-only memory, is mapped.
 */
import { expect, it } from 'vitest';
import { demo } from '../src/demo.js';
import { claimDevices } from './drivers/devices.js';
import { BACKEND } from './helpers.js';

it(`npm run demo tours an IOAS and a device doing DMA [${BACKEND}]`, () => {
  const lines: string[] = [];
  const release = claimDevices(['0000:00:01.0']);
  try {
    demo(BACKEND, (l) => lines.push(l));
  } finally {
    release();
  }
  const out = lines.join('\n');
  expect(out).toMatch(/IOMMU_IOAS_MAP -> errno 17 \(EEXIST\)/);
  expect(out).toMatch(/IOMMU_IOAS_UNMAP -> errno 2 \(ENOENT\)/);
  expect(out).toContain('"bytes that went RAM -> device -> RAM through the IOMMU"');
  expect(out).toContain('no byte of memory changed');
  expect(out).toContain('[0x0000fef00000, 0x007fffffffff]');
});
