/**
 * Device DMA into a bridged program's own memory (docs/bridge.md): test/bridge/edu_dma.c maps
 * anonymous memory and memfds into an IOAS (or a type1 container), has edu's DMA engine copy
 * RAM -> device -> RAM, and checks in its own memory where the bytes landed; pages pinned by a
 * child that has exited, an unmapped IOVA and a read-only one too. It runs against the sim through the bridge, and in the
 * VM natively on the real kernel, which decides what it must print.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import { q35Edu } from '../src/backends/sim/machine/presets.js';
import { PciDevice } from '../src/device/pci.js';
import { runBridged } from '../src/bridge/index.js';
import { cc, selftests } from './bridge_build.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { BACKEND } from './helpers.js';

const IN_GUEST = process.env.IOASID_IN_GUEST === '1';
const built = selftests();

/** presets.q35Edu's edu alone in its IOMMU group (the VM's 00:01.0 is the same). */
const SIM_EDU = '0000:00:01.0';

/** What the real 7.3 kernel prints for edu_dma.c on the VM's edu (and so the sim must). */
const EXPECTED = `edu id 0x010000ed
anonymous: iova 0x100c00 -> edu -> iova 0x102e00 landed in the program's buffer, and nothing else changed: yes
memfd: iova 0x100800 -> edu -> iova 0x202e00 landed in the memfd's mapping: yes
memfd: and read() of the memfd shows it: yes
memfd: iova 0x201800 -> edu -> iova 0x103800 (anonymous) carried the memfd's bytes: yes
exited pinner: iova 0x100400 -> edu -> iova 0x401000 landed in the parent's mapping of the shared memfd: yes
exited pinner: iova 0x400000 -> edu -> iova 0x100000 carried the shared memfd's bytes: yes
exited pinner: the child's private pages hold what edu wrote there (iova 0x500200): yes
unmapped iova 0x600000: both directions completed; the read left zeros in edu's buffer: yes
read-only iova 0x700000: a device write there changed nothing: yes
unmapped 81920 bytes
`;

const kernelEdu = BACKEND === 'linux' ? deviceMachine().soloEdu : null;

/** The program's arguments for an edu: its cdev (iommufd), or its group and name (a type1 container). */
const MODES: [string, (d: PciDevice) => string[]][] = [
  ['its VFIO cdev bound to an iommufd, an IOAS', (d) => [d.vfioCdev ?? 'no cdev']],
  ['its group in a type1 container', (d) => [`/dev/vfio/${d.iommuGroup}`, d.bdf]],
];

describe.skipIf(!built).each(MODES)('bridge: edu\'s DMA reaches the program\'s own memory, through %s', (_mode, args) => {
  it('through the bridge on the sim (q35Edu)', async () => {
    const r = await runBridged(cc(built!, 'test/bridge/edu_dma.c'), args(new PciDevice(openBinding('sim'), SIM_EDU)), { machine: q35Edu() });
    expect(r.stdout + r.stderr).toBe(EXPECTED);
    expect(r.code).toBe(0);
  }, 120_000);

  it.skipIf(!IN_GUEST || !kernelEdu)(`natively on the real kernel (the VM's edu${kernelEdu ? ` ${kernelEdu}` : ''})`, () => {
    const release = claimDevices([kernelEdu!]);
    try {
      const argv = args(new PciDevice(openBinding('linux'), kernelEdu!));
      expect(execFileSync(cc(built!, 'test/bridge/edu_dma.c'), argv, { encoding: 'utf8', timeout: 120_000 })).toBe(EXPECTED);
    } finally {
      release();
    }
  }, 180_000);
});
