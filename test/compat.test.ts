/**
 * The legacy VFIO container API (src/compat) as an existing VFIO tool uses it: one program
 * (container, group, SET_IOMMU, MAP_DMA, GET_DEVICE_FD, a DMA round trip through QEMU's edu,
 * UNMAP_DMA, close) runs unchanged in every mode, with both type1 flavours; then what each mode
 * answers about itself. Expected values are what Linux 7.3 answered in the test VM. Modes whose
 * kernel pieces the tier's machine lacks skip with the missing piece in the title.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import type { Binding } from '../src/backends/types.js';
import { PciDevice } from '../src/device/pci.js';
import {
  Iommufd, VfioContainer, VfioGroup, containerUapi as V, type CompatMode, type IommuType,
} from '../src/index.js';
import { BACKEND, P, expectErrno } from './helpers.js';
import { claimDevices } from './drivers/devices.js';
import { EduDriver } from './drivers/edu.js';
import { ALL_MODES, machine, modeCase, why } from './compat_modes.js';

const bdf = machine.soloEdu ?? '0000:00:01.0';

/** The VT-d of the test VM: its aperture (39-bit) minus the interrupt window. */
const VM_RANGES = [
  { start: 0n, last: 0xfedf_ffffn },
  { start: 0xfef0_0000n, last: 0x7f_ffff_ffffn },
];
/** Second-stage VT-d domains with 2 MiB and 1 GiB superpages (QEMU's SLLPS). */
const VTD_PGSIZES = (1n << 12n) | (1n << 21n) | (1n << 30n);

/**
 * An existing VFIO tool, written against the legacy API and nothing else. Returns what it saw.
 * `mode` is the only thing that changes between runs.
 */
function legacyTool(binding: Binding, mode: CompatMode, iommuType: IommuType) {
  const type = iommuType === 'type1' ? V.VFIO_TYPE1_IOMMU : V.VFIO_TYPE1v2_IOMMU;
  using container = VfioContainer.open(binding, { mode, iommuType });
  if (container.apiVersion() !== V.VFIO_API_VERSION) throw new Error('unknown VFIO API version');
  if (!container.checkExtension(type)) throw new Error('IOMMU type not supported');
  using group = VfioGroup.forDevice(binding, bdf, { mode });
  if (!group.status().viable) throw new Error('group not viable');
  group.setContainer(container);
  container.setIommu(type);
  const info = container.info();

  const mm = new Iommufd(binding);
  using src = mm.mmap(4 * P);
  using dst = mm.mmap(4 * P);
  mm.close();
  const text = new TextEncoder().encode(`through a ${mode} container`);
  src.bytes.set(text);
  container.mapDma(src, 0x10_0000n, { write: false });
  container.mapDma(dst, 0x20_0000n);

  using dev = group.getDevice(bdf);
  const edu = new EduDriver(dev);
  edu.init();
  edu.memcpy(0x10_0000n, 0x20_0000n, text.length);
  edu.remove();
  const copied = new TextDecoder().decode(dst.bytes.subarray(0, text.length));

  const unmapped = [container.unmapDma(0x10_0000n, 4n * BigInt(P)), container.unmapDma(0x20_0000n, 4n * BigInt(P))];
  return { info, copied, unmapped, origin: dev.origin };
}

describe(`an existing VFIO tool runs unchanged in every mode [${BACKEND}]`, () => {
  let release: () => void = () => {};
  beforeAll(() => {
    if (machine.soloEdu) release = claimDevices([machine.soloEdu]);
  });
  afterAll(() => release());

  for (const m of ALL_MODES) {
    it.skipIf(m.skip !== '')(`${m.name}: container, group, SET_IOMMU, MAP_DMA, GET_DEVICE_FD, edu DMA, UNMAP_DMA${why(m.skip)}`, () => {
      const r = legacyTool(openBinding(BACKEND), m.mode, m.iommuType);
      expect(r.copied).toBe(`through a ${m.mode} container`);
      expect(r.unmapped).toEqual([4n * BigInt(P), 4n * BigInt(P)]);
      // Before any device: type1 reports the group's ranges and its page sizes from SET_IOMMU on;
      // the compat IOAS has no domain yet, so every page size and the whole IOVA space.
      if (m.mode === 'type1') {
        expect(r.info.iovaRanges).toEqual(VM_RANGES);
        expect(r.info.pageSizes).toBe(VTD_PGSIZES);
        expect(r.info.dmaAvail).toBe(65535);
        expect(r.info.migration).not.toBeNull();
      } else {
        expect(r.info.iovaRanges).toEqual([{ start: 0n, last: 0xffff_ffff_ffff_ffffn }]);
        expect(r.info.pageSizes).toBe(0xffff_ffff_ffff_f000n);
        expect(r.info.dmaAvail).toBe(0xffff_ffff);
        expect(r.info.migration).toBeNull();
      }
      expect(r.origin).toBe(m.mode === 'iommufd' ? 'cdev' : 'group');
    });
  }
});

describe(`what each mode answers about itself [${BACKEND}]`, () => {
  let release: () => void = () => {};
  beforeAll(() => {
    if (machine.soloEdu) release = claimDevices([machine.soloEdu]);
  });
  afterAll(() => release());

  for (const mode of ['type1', 'kernel-compat', 'iommufd'] as const) {
    const m = modeCase(mode, 'type1v2');
    it.skipIf(m.skip !== '')(`${mode}: extensions before and after a group; the container's Iommufd and Ioas${why(m.skip)}`, () => {
      const b = openBinding(BACKEND);
      using c = VfioContainer.open(b, { mode });
      const exts = [V.VFIO_TYPE1_IOMMU, V.VFIO_SPAPR_TCE_IOMMU, V.VFIO_TYPE1v2_IOMMU, V.VFIO_EEH, V.VFIO_TYPE1_NESTING_IOMMU,
        V.VFIO_SPAPR_TCE_v2_IOMMU, V.VFIO_NOIOMMU_IOMMU, V.VFIO_UNMAP_ALL, V.VFIO_UPDATE_VADDR];
      // The same answers from type1 (no IOMMU driver chosen yet) and from iommufd's compat.
      expect(exts.map((e) => c.checkExtension(e))).toEqual([1, 0, 1, 0, 0, 0, 0, 1, 0]);
      if (mode === 'type1') expect(c.checkExtension(V.VFIO_DMA_CC_IOMMU)).toBe(0);
      else expectErrno(() => c.checkExtension(V.VFIO_DMA_CC_IOMMU), 'ENODEV');
      expect(c.iommufd === null).toBe(mode === 'type1');
      expect(c.ioas).toBeNull();
      using g = VfioGroup.forDevice(b, bdf, { mode });
      g.setContainer(c);
      // type1 looks for a driver that knows the type (ENODEV); the compat layer knows two (EINVAL).
      expectErrno(() => c.setIommu(V.VFIO_SPAPR_TCE_IOMMU), mode === 'type1' ? 'ENODEV' : 'EINVAL');
      c.setIommu();
      if (mode === 'type1') {
        // Once type1 has its driver: UPDATE_VADDR is offered, a second SET_IOMMU is not.
        expect(c.checkExtension(V.VFIO_UPDATE_VADDR)).toBe(1);
        expectErrno(() => c.setIommu(), 'EINVAL');
        expect(c.ioas).toBeNull();
        return;
      }
      c.setIommu();
      expect(c.checkExtension(V.VFIO_UPDATE_VADDR)).toBe(0);
      // The container's IOAS is an ordinary IOAS of its iommufd: new-style calls see the legacy maps.
      const ioas = c.ioas!;
      using mem = c.iommufd!.mmap(2 * P);
      c.mapDma(mem, 0x40_0000n);
      expectErrno(() => ioas.mapUser(mem.addr, BigInt(P), { iova: 0x40_1000n }), 'EEXIST');
      ioas.map(mem, { iova: 0x50_0000n });
      expect(c.unmapDma(0x50_0000n, 2n * BigInt(P))).toBe(2n * BigInt(P));
      expect(ioas.unmap(0x40_0000n, 2n * BigInt(P))).toBe(2n * BigInt(P));
      expect(c.iommufd!.getVfioIoas()).toBe(mode === 'kernel-compat' ? ioas.id : null);
    });
  }
});

const pair = machine.groupedEdus;
const pairGroup = pair ? new PciDevice(openBinding(BACKEND), pair[0]).iommuGroup : null;

describe.skipIf(!pair)(`one group, two devices, one container [${BACKEND}]${why(machine.noGroupReason)}`, () => {
  let release: () => void = () => {};
  beforeAll(() => {
    if (pair) release = claimDevices(pair);
  });
  afterAll(() => release());

  for (const mode of ['type1', 'kernel-compat', 'iommufd'] as const) {
    const m = modeCase(mode, 'type1v2', pairGroup);
    it.skipIf(m.skip !== '')(`${mode}: both devices from the one group, each DMAs through the container's mappings${why(m.skip)}`, () => {
      const b = openBinding(BACKEND);
      using c = VfioContainer.open(b, { mode });
      using g = VfioGroup.open(b, pairGroup!, { mode });
      expect(g.devices()).toEqual(expect.arrayContaining([...pair!]));
      expect(g.status()).toMatchObject({ viable: true, containerSet: false });
      g.setContainer(c);
      c.setIommu();
      const mm = new Iommufd(b);
      using mem = mm.mmap(4 * P);
      mm.close();
      mem.bytes.fill(0);
      c.mapDma(mem, 0x10_0000n);
      pair!.forEach((name, i) => {
        using dev = g.getDevice(name);
        const edu = new EduDriver(dev);
        edu.init();
        mem.bytes.fill(0x40 + i, 0, 64);
        edu.toDevice(0x10_0000n, 64);
        edu.toRam(0x10_1000n + BigInt(i) * 64n, 64);
        edu.remove();
      });
      expect([mem.bytes[P], mem.bytes[P + 64]]).toEqual([0x40, 0x41]);
      // A member that is no VFIO device (the PCIe-to-PCI bridge) cannot be got.
      const bridge = g.devices().find((d) => !pair!.includes(d));
      expect(bridge).toBeDefined();
      expectErrno(() => g.getDevice(bridge!), 'ENODEV');
      expect(c.unmapAllDma()).toBe(4n * BigInt(P));
    });
  }
});
