/**
 * Port of the kernel's tools/testing/selftests/vfio/vfio_pci_driver_test.c (linux-source-7.3) in
 * all six modes, with the edu driver of test/libvfio.ts in place of lib/drivers' ioat/dsa: memcpy
 * is RAM -> edu's buffer -> RAM through IOVAs, in chunks of EDU_MAX_CHUNK bytes; send_msi is edu's
 * IRQ_RAISE on its MSI vector. Then the edu DMA round trip of docs/compat.md's legacy tool, driven
 * through IommuSession, in the same six modes.
 *
 * Sizes differ from the C where edu cannot follow it: edu drives 28 address bits, so the memcpy
 * region is 2 MiB instead of 1 GiB and the unmapped IOVA range 2 MiB instead of 1 GiB (both at
 * allocator IOVAs below 2^28); each edu transfer takes ~100 ms in the test VM, so the memcpy size
 * (4 x max_memcpy_size, as the C) is 8 KiB.
 */
import { describe, expect, it } from 'vitest';
import { MAP_ANONYMOUS, MAP_SHARED, PROT_READ, PROT_WRITE, type Binding } from '../src/backends/types.js';
import { IommuSession } from '../src/migration/modes.js';
import { BACKEND } from './helpers.js';
import { EduDriver } from './drivers/edu.js';
import { IovaAllocator, MODES, SZ_2M, deviceBdf, pollEventfd, title, useVfio, type DmaRegion, type Iommu, type VfioFixture } from './libvfio.js';
import { afterAll, beforeAll } from 'vitest';
import { claimDevices } from './drivers/devices.js';

/** region_setup: shared anonymous memory of `size` at an allocator IOVA, mapped. */
function regionSetup(iommu: Iommu, allocator: IovaAllocator, size: bigint): DmaRegion {
  const vaddr = iommu.binding.mmap(0n, Number(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  const region: DmaRegion = { vaddr, iova: allocator.alloc(size), size };
  iommu.map(region);
  return region;
}

/** region_teardown */
function regionTeardown(iommu: Iommu, region: DmaRegion): void {
  iommu.unmap(region);
  iommu.binding.munmap(region.vaddr, Number(region.size));
}

const bytes = (b: Binding, vaddr: bigint, size: bigint): Uint8Array => b.view(vaddr, Number(size));

for (const { name: mode, skip } of MODES) {
  describe.skipIf(!!skip)(title('vfio_pci_driver_test', mode, skip), () => {
    let memcpyRegion: DmaRegion;
    let size: bigint;
    let src: bigint;
    let dst: bigint;
    let srcIova: bigint;
    let dstIova: bigint;
    let unmappedIova: bigint;

    const f: VfioFixture = useVfio(mode, {
      setup: (x) => {
        const allocator = new IovaAllocator(x.iommu.iovaRanges());
        const driver = x.device.driver;
        memcpyRegion = regionSetup(x.iommu, allocator, SZ_2M);
        driver.region = regionSetup(x.iommu, allocator, SZ_2M);
        // Any IOVA that doesn't overlap memcpy_region and driver->region.
        unmappedIova = allocator.alloc(SZ_2M);
        driver.init();
        // 4x the driver's max_memcpy_size exercises the chunking; at most half the memcpy region.
        size = driver.maxMemcpySize * 4n < memcpyRegion.size / 2n ? driver.maxMemcpySize * 4n : memcpyRegion.size / 2n;
        src = memcpyRegion.vaddr;
        dst = src + size;
        srcIova = x.iommu.hva2iova(src)!;
        dstIova = x.iommu.hva2iova(dst)!;
      },
      teardown: (x) => {
        if (x.device.driver.initialized) x.device.driver.remove();
        regionTeardown(x.iommu, memcpyRegion);
        regionTeardown(x.iommu, x.device.driver.region!);
      },
    });

    const msiFd = () => f.device.msiEventfds[f.device.driver.msi]!;
    /** ASSERT_NO_MSI: the (non-blocking) eventfd reads EAGAIN. */
    const assertNoMsi = () => expect(msiFd().read()).toBe(0n);
    const fill = (vaddr: bigint, c: string) => bytes(f.iommu.binding, vaddr, size).fill(c.charCodeAt(0));
    const same = () => Buffer.compare(Buffer.from(bytes(f.iommu.binding, src, size)), Buffer.from(bytes(f.iommu.binding, dst, size)));

    it('init_remove', () => {
      for (let i = 0; i < 10; i++) {
        f.device.driver.remove();
        f.device.driver.init();
      }
    });

    it('memcpy_success', () => {
      fill(src, 'x');
      fill(dst, 'y');
      expect(f.device.driver.memcpy(srcIova, dstIova, size)).toBe(0);
      expect(same()).toBe(0);
      assertNoMsi();
    });

    it('memcpy_from_unmapped_iova: no MSI, src untouched', () => {
      fill(src, 'x');
      // The return value is ignored: not all devices detect and report accesses to unmapped IOVAs (edu does not).
      f.device.driver.memcpy(unmappedIova, dstIova, size);
      assertNoMsi();
      // Not in the C: the device read nothing it could write back into src.
      expect(bytes(f.iommu.binding, src, size).every((c) => c === 0x78)).toBe(true);
    });

    it('memcpy_to_unmapped_iova: no MSI, src and dst not corrupted', () => {
      fill(src, 'x');
      fill(dst, 'y');
      f.device.driver.memcpy(srcIova, unmappedIova, size);
      assertNoMsi();
      // Not in the C: the writes to the unmapped IOVA reached no byte of the region.
      expect(bytes(f.iommu.binding, src, size).every((c) => c === 0x78)).toBe(true);
      expect(bytes(f.iommu.binding, dst, size).every((c) => c === 0x79)).toBe(true);
    });

    it('send_msi', () => {
      f.device.driver.sendMsi();
      expect(pollEventfd(msiFd(), 10_000)).toBe(true);
      expect(msiFd().read()).toBe(1n);
    });

    it('mix_and_match', () => {
      for (let i = 0; i < 10; i++) {
        fill(src, 'x');
        fill(dst, 'y');
        expect(f.device.driver.memcpy(srcIova, dstIova, size)).toBe(0);
        expect(same()).toBe(0);
        f.device.driver.memcpy(unmappedIova, dstIova, size);
        f.device.driver.sendMsi();
        expect(pollEventfd(msiFd(), 10_000)).toBe(true);
        expect(msiFd().read()).toBe(1n);
      }
    }, 120_000);

    it('memcpy_storm (edu: max_memcpy_count 1, so one memcpy of max_memcpy_size)', () => {
      const driver = f.device.driver;
      const totalSize = 250n << 30n;
      const chunk = driver.maxMemcpySize < memcpyRegion.size / 2n ? driver.maxMemcpySize : memcpyRegion.size / 2n;
      const count = totalSize / chunk < driver.maxMemcpyCount ? totalSize / chunk : driver.maxMemcpyCount;
      driver.memcpyStart(srcIova, dstIova, chunk, count);
      expect(driver.memcpyWait()).toBe(0);
      assertNoMsi();
    }, 60_000);

    it('memcpy completed by edu\'s DMA-done MSI instead of polling (not in the C)', () => {
      const driver = f.device.driver;
      driver.remove();
      driver.completion = 'msi';
      driver.init();
      fill(src, 'x');
      fill(dst, 'y');
      expect(driver.memcpy(srcIova, dstIova, size)).toBe(0);
      expect(same()).toBe(0);
      // every interrupt was the driver's to consume
      assertNoMsi();
    });
  });

  describe.skipIf(!!skip)(title('edu DMA round trip', mode, skip), () => {
    let release = (): void => {};
    beforeAll(() => {
      release = claimDevices([deviceBdf!]);
    });
    afterAll(() => release());

    it('RAM -> device -> RAM through IOVAs (docs/compat.md\'s legacy tool); unmap 4096, unmap-all 4096', () => {
      using s = IommuSession.init(mode, BACKEND);
      const dev = s.openDevice(deviceBdf!);
      const srcMem = s.alloc(4096);
      const dstMem = s.alloc(4096);
      srcMem.bytes.set(new TextEncoder().encode('legacy'));
      s.map({ mem: srcMem, iova: 0x100000n, write: false });
      s.map({ mem: dstMem, iova: 0x200000n });
      expect(EduDriver.probe(dev)).toBe(true);
      const edu = new EduDriver(dev);
      edu.init();
      edu.toDevice(0x100000n, 6);
      edu.toRam(0x200000n, 6);
      edu.remove();
      expect(new TextDecoder().decode(dstMem.bytes.subarray(0, 6))).toBe('legacy');
      expect(s.unmap({ iova: 0x100000n, size: 4096n })).toBe(4096n);
      expect(s.unmapAll()).toBe(4096n);
    });
  });
}
