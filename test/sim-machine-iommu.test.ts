/**
 * The sim's IOMMU hardware models: VT-d/SMMUv3/mock capabilities derived the way the 7.3 drivers
 * derive them, and the unit's translation path (context table, blocking, faults, IOTLB). Expected
 * VT-d values are what the project's VM reported (test/sim-machine.vm-probe.txt). Sim-only: these
 * are the simulated machine's own parts, which the real kernel has no counterpart API for.
 */
import { describe, expect, it } from 'vitest';
import type { DmaTarget } from '../src/backends/sim/include/iommu.js';
import { IommuUnit } from '../src/backends/sim/hw/iommu.js';
import { mockCaps, mockDeviceCaps } from '../src/backends/sim/hw/mock_iommu.js';
import { MOCK_APERTURE_LAST, MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID } from '../src/testing.js';
import { smmuv3Caps, smmuv3Registers } from '../src/backends/sim/hw/smmuv3.js';
import { vtdCaps, vtdRegisters } from '../src/backends/sim/hw/vtd.js';
import { BACKEND } from './helpers.js';
import { FlatMap } from './sim-machine-toys.js';

const SIM_ONLY = BACKEND === 'linux' ? ' (skipped on linux: a unit test of the sim machine model)' : '';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe(`IOMMU models${SIM_ONLY}`, () => {
  it.skipIf(!!SIM_ONLY)('VT-d defaults are the registers QEMU 7.2 gives the VM; caps follow the intel driver', () => {
    const regs = vtdRegisters();
    expect(regs.cap).toBe(0xd2008c22260286n);
    expect(regs.ecap).toBe(0xf00f4an);
    const caps = vtdCaps(regs);
    expect(caps.pgsizeBitmap).toBe(0x1000n | 0x20_0000n | 0x4000_0000n);
    // The VM's IOVA ranges with edu attached: [0, 0xfedfffff], [0xfef00000, 0x7fffffffff].
    expect(caps.aperture).toEqual({ start: 0n, last: 0x7f_ffff_ffffn });
    expect(caps.reserved).toEqual([{ start: 0xfee0_0000n, last: 0xfeef_ffffn, kind: 'msi' }]);
    // ECAP.SC is clear: no IOMMU_CAP_ENFORCE_CACHE_COHERENCY; legacy mode: no SSADS, nesting, PASID.
    expect([caps.enforceCacheCoherency, caps.dirtyTracking, caps.nesting, caps.pasidBits]).toEqual([false, false, false, 0]);
    expect(caps.hwInfoType).toBe(1);
    // IOMMU_GET_HW_INFO data the VM returned for edu: flags = ERRATA_772415_SPR17, cap_reg, ecap_reg.
    expect(hex(caps.hwInfo())).toBe('0100000000000000860226228c00d2004a0ff00000000000');
  });

  it.skipIf(!!SIM_ONLY)('VT-d options set the register bits the driver tests (aw-bits 48, snoop control, scalable mode)', () => {
    const caps48 = vtdCaps(vtdRegisters({ awBits: 48 }));
    expect(caps48.aperture.last).toBe((1n << 48n) - 1n);
    expect(vtdCaps(vtdRegisters({ snoopControl: true })).enforceCacheCoherency).toBe(true);
    // SSADS needs scalable mode (ssads_supported = sm_supported && ecap_slads && ecap_smpwc).
    expect(vtdCaps(vtdRegisters({ dirtyTracking: true })).dirtyTracking).toBe(false);
    const sm = vtdCaps(vtdRegisters({ scalableMode: true, pasidBits: 20, dirtyTracking: true, nesting: true }));
    expect([sm.dirtyTracking, sm.nesting, sm.pasidBits]).toEqual([true, true, 20]);
  });

  it.skipIf(!!SIM_ONLY)('SMMUv3: stage-1 aperture from IAS, 4K granule sizes, SW MSI window, iommu_hw_info_arm_smmuv3 payload', () => {
    const regs = smmuv3Registers();
    const caps = smmuv3Caps(regs);
    expect(caps.aperture).toEqual({ start: 0n, last: (1n << 48n) - 1n });
    expect(caps.pgsizeBitmap).toBe(0x1000n | 0x20_0000n | 0x4000_0000n);
    expect(caps.reserved).toEqual([{ start: 0x800_0000n, last: 0x80f_ffffn, kind: 'sw-msi' }]);
    expect([caps.dirtyTracking, caps.nesting, caps.pasidBits, caps.hwInfoType]).toEqual([true, true, 20, 2]);
    const info = caps.hwInfo();
    expect(info.length).toBe(40);
    const dv = new DataView(info.buffer);
    expect(dv.getUint32(8, true)).toBe(regs.idr[0]);
    expect(dv.getUint32(28, true)).toBe(regs.idr[5]);
    expect(dv.getUint32(32, true)).toBe(regs.iidr);
    // Without COHACC no dirty tracking (arm_smmu_dbm_capable needs HD and COHERENCY); S2 only: IAS = OAS.
    expect(smmuv3Caps(smmuv3Registers({ coherent: false })).dirtyTracking).toBe(false);
    expect(smmuv3Caps(smmuv3Registers({ s1: false, oasBits: 44 })).aperture.last).toBe((1n << 44n) - 1n);
  });

  it.skipIf(!!SIM_ONLY)('mock: selftest.c aperture, 2 KiB granule, IOMMU_HW_INFO_TYPE_SELFTEST payload, per-device flags', () => {
    const caps = mockCaps();
    expect(caps.aperture).toEqual({ start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST });
    expect(caps.pgsizeBitmap & 0xfffn).toBe(0x800n);
    expect(caps.hwInfoType).toBe(0xfeedbeef);
    expect(hex(caps.hwInfo())).toBe('00000000efbeadde');
    expect(mockDeviceCaps(caps, 0)).toMatchObject({ dirtyTracking: true, pasidBits: 0 });
    expect(mockDeviceCaps(caps, MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID)).toMatchObject({ dirtyTracking: false, pasidBits: 20 });
  });
});

describe(`IOMMU unit translation${SIM_ONLY}`, () => {
  const fresh = (): { unit: IommuUnit; dom: FlatMap; mem: Uint8Array } => {
    const unit = new IommuUnit(vtdCaps(vtdRegisters()), 'dmar0');
    const dom = new FlatMap();
    const mem = new Uint8Array(4 * 4096);
    return { unit, dom, mem };
  };

  it.skipIf(!!SIM_ONLY)('no context = blocking domain: every DMA faults "blocked" and is logged, no byte moves', () => {
    const { unit } = fresh();
    const buf = new Uint8Array([1, 2, 3]);
    const f = unit.port(0x08).write(0x1000n, buf);
    expect(f).toEqual({ iova: 0x1000n, write: true, reason: 'blocked', rid: 0x08, pasid: null });
    expect(unit.faults).toEqual([f]);
    expect([...buf]).toEqual([1, 2, 3]);
  });

  it.skipIf(!!SIM_ONLY)('reads and writes cross pages through the installed domain', () => {
    const { unit, dom, mem } = fresh();
    dom.map(0x10_0000n, mem, 0, 4 * 4096);
    unit.setTranslation(0x08, null, dom);
    const src = Uint8Array.from({ length: 6000 }, (_, i) => i & 0xff);
    expect(unit.port(0x08).write(0x10_0800n, src)).toBeNull();
    expect([...mem.subarray(0x800, 0x800 + 6000)]).toEqual([...src]);
    const back = new Uint8Array(6000);
    expect(unit.port(0x08).read(0x10_0800n, back)).toBeNull();
    expect([...back]).toEqual([...src]);
    expect(unit.faults).toEqual([]);
  });

  it.skipIf(!!SIM_ONLY)('a fault anywhere in the range stops the whole DMA before any byte moves', () => {
    const { unit, dom, mem } = fresh();
    dom.map(0x10_0000n, mem, 0, 4096); // the second page is not mapped
    dom.map(0x20_0000n, mem, 4096, 4096, false); // read-only
    unit.setTranslation(0x08, null, dom);
    const src = new Uint8Array(4097).fill(0xaa);
    const f = unit.port(0x08).write(0x10_0000n, src);
    expect(f).toMatchObject({ iova: 0x10_1000n, reason: 'not-present', write: true });
    expect(mem.every((b) => b === 0)).toBe(true);
    const g = unit.port(0x08).write(0x20_0010n, new Uint8Array(4).fill(1));
    expect(g).toMatchObject({ iova: 0x20_0010n, reason: 'permission' });
    expect(mem.every((b) => b === 0)).toBe(true);
    const dst = new Uint8Array(8).fill(7);
    expect(unit.port(0x08).read(0x10_0ffcn, dst)).toMatchObject({ iova: 0x10_1000n, reason: 'not-present', write: false });
    expect([...dst]).toEqual([7, 7, 7, 7, 7, 7, 7, 7]);
    expect(unit.faults.map((x) => x.reason)).toEqual(['not-present', 'permission', 'not-present']);
  });

  it.skipIf(!!SIM_ONLY)('beyond the input address width: "aperture" fault', () => {
    const { unit, dom } = fresh();
    unit.setTranslation(0x08, null, dom);
    expect(unit.port(0x08).read(0x80_0000_0000n, new Uint8Array(1))).toMatchObject({ reason: 'aperture', iova: 0x80_0000_0000n });
    expect(unit.port(0x08).read(0x7f_ffff_fffen, new Uint8Array(4))).toMatchObject({ reason: 'aperture', iova: 0x80_0000_0000n });
  });

  it.skipIf(!!SIM_ONLY)('the IOTLB caches walks, a generation bump (unmap) invalidates them, flushIotlb drops them', () => {
    const { unit, dom, mem } = fresh();
    dom.map(0x10_0000n, mem, 0, 4096);
    unit.setTranslation(0x08, null, dom);
    const b = new Uint8Array(16);
    for (let i = 0; i < 5; i++) expect(unit.port(0x08).read(0x10_0000n, b)).toBeNull();
    expect(dom.walks).toBe(1);
    expect(unit.stats).toMatchObject({ iotlbHits: 4, iotlbMisses: 1, translations: 5 });
    dom.unmap(0x10_0000n, 4096);
    expect(unit.port(0x08).read(0x10_0000n, b)).toMatchObject({ reason: 'not-present' });
    dom.map(0x10_0000n, mem, 4096, 4096);
    unit.port(0x08).read(0x10_0000n, b);
    const walks = dom.walks;
    unit.flushIotlb(dom);
    unit.port(0x08).read(0x10_0000n, b);
    expect(dom.walks).toBe(walks + 1);
    unit.iotlbEnabled = false;
    unit.port(0x08).read(0x10_0000n, b);
    unit.port(0x08).read(0x10_0000n, b);
    expect(dom.walks).toBe(walks + 3);
  });

  it.skipIf(!!SIM_ONLY)('PASID contexts are separate from the RID context; a domain without a walk is copied through', () => {
    const { unit, dom, mem } = fresh();
    unit.setTranslation(0x08, 5, dom);
    dom.map(0x1000n, mem, 0, 4096);
    expect(unit.port(0x08).read(0x1000n, new Uint8Array(1))).toMatchObject({ reason: 'blocked', pasid: null });
    expect(unit.port(0x08).read(0x1000n, new Uint8Array(1), 5)).toBeNull();
    const plain: DmaTarget = { dmaRead: (iova, dst) => dom.dmaRead(iova, dst), dmaWrite: (iova, src) => dom.dmaWrite(iova, src) };
    unit.setTranslation(0x10, null, plain);
    expect(unit.port(0x10).write(0x1000n, new Uint8Array([9]))).toBeNull();
    expect(mem[0]).toBe(9);
    expect(unit.port(0x10).write(0x3000n, new Uint8Array([9]))).toMatchObject({ reason: 'not-present', rid: 0x10 });
    unit.setTranslation(0x08, 5, null);
    expect(unit.translation(0x08, 5)).toBeNull();
  });
});
