/**
 * Port of the kernel's tools/testing/selftests/vfio/vfio_iommufd_setup_test.c (linux-source-7.3):
 * FIXTURE(vfio_cdev), a device cdev and /dev/iommu opened side by side, and the VFIO cdev ioctls
 * between them. The C is iommufd-specific and has no IOMMU-mode variants (it never opens a
 * container): it runs once, in the native iommufd mode. The C asserts only that the refusals fail;
 * the errnos asserted here are the kernel's (vfio_main.c / device_cdev.c), seen in the test VM.
 */
import { describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import type { Binding } from '../src/backends/types.js';
import { PciDevice } from '../src/device/pci.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { Iommufd } from '../src/ioasid/iommufd.js';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { BACKEND, expectErrno } from './helpers.js';
import { claimDevices } from './drivers/devices.js';
import { deviceBdf, machine, title } from './libvfio.js';

const skip = deviceBdf ? '' : machine.noSoloReason;

describe.skipIf(!!skip)(title('vfio_iommufd_setup_test vfio_cdev', 'iommufd', skip), () => {
  const iommuDevPath = '/dev/iommu';
  let cdevPath: string;
  let b: Binding;
  let cdev: VfioDevice;
  /** open(iommu_dev_path): the Iommufd object only issues IOMMU_IOAS_ALLOC for attach_detatch_pt. */
  let ctx: Iommufd;
  let iommufd: number;
  let release = (): void => {};

  beforeAll(() => {
    release = claimDevices([deviceBdf!]);
    // vfio_pci_get_cdev_path
    cdevPath = new PciDevice(openBinding(BACKEND), deviceBdf!).vfioCdev!;
  });
  afterAll(() => release());

  // FIXTURE_SETUP / FIXTURE_TEARDOWN
  beforeEach(() => {
    b = openBinding(BACKEND);
    cdev = VfioDevice.open(b, cdevPath);
    ctx = new Iommufd(b, iommuDevPath);
    iommufd = ctx.fd;
  });
  afterEach(() => {
    cdev.close();
    ctx.close();
  });

  it('bind', () => {
    expect(cdev.bind(iommufd)).toBeGreaterThan(0);
    expect(cdev.info().pci).toBe(true);
  });

  it('get_info_without_bind_fails: EINVAL', () => {
    expectErrno(() => cdev.info(), 'EINVAL');
  });

  it('bind_bad_iommufd_fails: iommufd -2 EINVAL (a negative fd is refused before any lookup)', () => {
    expectErrno(() => cdev.bind(-2), 'EINVAL');
  });

  it('repeated_bind_fails: EINVAL', () => {
    cdev.bind(iommufd);
    expectErrno(() => cdev.bind(iommufd), 'EINVAL');
  });

  it('attach_detatch_pt', () => {
    cdev.bind(iommufd);
    const ioas = ctx.allocIoas(); // IOMMU_IOAS_ALLOC
    expect(cdev.attach(ioas.id)).toBeGreaterThan(0);
    cdev.detach();
  });

  it('attach_invalid_pt_fails: pt_id UINT32_MAX ENOENT', () => {
    cdev.bind(iommufd);
    expectErrno(() => cdev.attach(0xffff_ffff), 'ENOENT');
  });
});
