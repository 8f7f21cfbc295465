/**
 * Port of the kernel selftest FIXTURE(iommufd_device_pasid) (variants no_pasid, has_pasid) from
 * tools/testing/selftests/iommu/iommufd.c: PASID attach / replace / detach of a PASID-capable
 * mock device against PASID-compatible and incompatible HWPTs, the RID/PASID compatibility rule,
 * the mock's designed failure on PASID 1024, and an I/O page fault delivered on a PASID.
 */
import { describe, expect, it } from 'vitest';
import { uapi, type Hwpt } from '../src/index.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT, IOMMU_VIOMMU_TYPE_SELFTEST, MOCK_FLAGS_DEVICE_PASID,
} from '../src/testing.js';
import { BACKEND, expectErrno, useIommufd } from './helpers.js';
import { ioasAlloc } from './selftest_utils.js';

function selftestData(): { type: number; bytes: Uint8Array } {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
  return { type: IOMMU_HWPT_DATA_SELFTEST, bytes };
}

describe.each([['no_pasid', false], ['has_pasid', true]] as const)(`iommufd_device_pasid %s [${BACKEND}]`, (_n, pasidCapable) => {
  const f = useIommufd();

  it('pasid_attach', () => {
    const { ctx, test: t } = f;
    // FIXTURE_SETUP(iommufd_device_pasid)
    const ioas = ioasAlloc(ctx);
    const dev = t.mockDomainFlags(ioas.id, MOCK_FLAGS_DEVICE_PASID);
    const noPasid = pasidCapable ? null : t.mockDomainFlags(ioas.id, 0);
    const check = (pasid: number, hwpt: Hwpt | number) => t.pasidCheckHwpt(dev.stdevId, pasid, typeof hwpt === 'number' ? hwpt : hwpt.id);
    let pasid = 100;

    // detaching a never-attached PASID is not an error
    t.pasidDetach(dev.stdevId, pasid);

    const parent = ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
    const nested0 = ctx.allocHwpt({ devId: dev.idevId, ptId: parent.id, pasid: true, data: selftestData() });
    const nested1 = ctx.allocHwpt({ devId: dev.idevId, ptId: parent.id, pasid: true, data: selftestData() });

    // Fault related preparation (test_ioctl_fault_alloc: both ids non-zero)
    const fault = ctx.allocFaultQueue();
    expect(fault.id).not.toBe(0);
    expect(fault.fd).not.toBe(0);
    const iopf = ctx.allocHwpt({ devId: dev.idevId, ptId: parent.id, pasid: true, faultId: fault.id, data: selftestData() });

    // a regular nested HWPT on a vIOMMU
    const v = ctx.cmd(uapi.IOCTLS.VIOMMU_ALLOC).u32('dev_id', dev.idevId).u32('hwpt_id', parent.id).u32('type', IOMMU_VIOMMU_TYPE_SELFTEST);
    ctx.ioctl(v);
    const viommuId = v.get32('out_viommu_id');
    const nested2 = ctx.allocHwpt({ devId: dev.idevId, ptId: viommuId, pasid: true, data: selftestData() });

    const s2 = ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, pasid: true });

    // RID on a non-PASID-compatible domain: a PASID attach fails
    t.mockDomainReplace(dev.stdevId, parent.id);
    expectErrno(() => t.pasidAttach(dev.stdevId, pasid, s2.id), 'EINVAL');

    // RID on a PASID-compatible domain: PASID attach works, and the RID cannot go back to a non-compatible one
    t.mockDomainReplace(dev.stdevId, s2.id);
    t.pasidAttach(dev.stdevId, pasid, nested0.id);
    expectErrno(() => t.mockDomainReplace(dev.stdevId, parent.id), 'EINVAL');
    t.pasidDetach(dev.stdevId, pasid);
    check(pasid, 0);

    if (noPasid) {
      // a PASID-compatible domain serves a non-PASID device's RID, but its PASIDs cannot be attached
      t.mockDomainReplace(noPasid.stdevId, nested0.id);
      t.mockDomainReplace(noPasid.stdevId, ioas.id);
      expectErrno(() => t.pasidAttach(noPasid.stdevId, pasid, parent.id), 'EINVAL');
      expectErrno(() => t.pasidAttach(noPasid.stdevId, pasid, s2.id), 'EINVAL');
    }

    // a non-PASID-compatible HWPT, or an IOAS, on a PASID: EINVAL and nothing attached
    expectErrno(() => t.pasidAttach(dev.stdevId, pasid, parent.id), 'EINVAL');
    check(pasid, 0);
    expectErrno(() => t.pasidAttach(dev.stdevId, pasid, ioas.id), 'EINVAL');
    check(pasid, 0);

    t.pasidAttach(dev.stdevId, pasid, s2.id);
    check(pasid, s2);
    // attach does not overwrite: EBUSY (use replace)
    expectErrno(() => t.pasidAttach(dev.stdevId, pasid, nested0.id), 'EBUSY');
    t.pasidDetach(dev.stdevId, pasid);
    check(pasid, 0);

    t.pasidAttach(dev.stdevId, pasid, nested0.id);
    check(pasid, nested0);
    expectErrno(() => t.pasidAttach(dev.stdevId, pasid, nested0.id), 'EBUSY');
    t.pasidDetach(dev.stdevId, pasid);

    // replace
    pasid = 200;
    expectErrno(() => t.pasidReplace(dev.stdevId, pasid, s2.id), 'EINVAL');
    t.pasidAttach(dev.stdevId, pasid, s2.id);
    check(pasid, s2);
    expectErrno(() => t.pasidReplace(dev.stdevId, pasid, ioas.id), 'EINVAL');
    check(pasid, s2);
    t.pasidReplace(dev.stdevId, pasid, nested0.id);
    check(pasid, nested0);
    t.pasidReplace(dev.stdevId, pasid, nested1.id);
    check(pasid, nested1);
    t.pasidDetach(dev.stdevId, pasid);

    // PASID 1024: the mock fails the second set_dev_pasid; the old domain stays
    pasid = 1024;
    t.pasidAttach(dev.stdevId, pasid, s2.id);
    check(pasid, s2);
    expectErrno(() => t.pasidReplace(dev.stdevId, pasid, nested0.id), 'ENOMEM');
    check(pasid, s2);
    t.pasidDetach(dev.stdevId, pasid);

    // an IOPF-capable HWPT on PASID 2048: the fault arrives with the PASID and is answered
    pasid = 2048;
    t.pasidAttach(dev.stdevId, pasid, iopf.id);
    check(pasid, iopf);
    t.triggerIopf(dev.idevId, pasid);
    const got = fault.read();
    expect(got.length).toBe(1);
    expect(got[0]).toMatchObject({ flags: 3, devId: dev.idevId, pasid, grpid: 2, perm: 3, addr: 0xdeadbeafn, length: 0 });
    fault.respond(got[0]!.cookie, 'success');
    t.pasidReplace(dev.stdevId, pasid, s2.id);
    check(pasid, s2);
    t.pasidDetach(dev.stdevId, pasid);

    iopf.destroy();
    fault.close();
    ctx.destroy(fault.id);
    void nested2;
    t.mockDomainReplace(dev.stdevId, ioas.id);
  });
});
