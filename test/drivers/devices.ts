/**
 * What the device tests need from the machine they run on: the edu devices bound to a VFIO
 * driver, found by discovery through the tier's backend (the test VM on linux, the simulated
 * machine on sim), and a cross-process claim on a device so that test files running in parallel
 * forks never open the same VFIO device at once (a second open of a bound cdev cannot bind).
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { openBinding } from '../../src/backends/index.js';
import type { Binding } from '../../src/backends/types.js';
import { findPciDevices, type PciDevice } from '../../src/device/pci.js';
import { VfioDevice } from '../../src/device/vfio_device.js';
import { Iommufd, type Ioas } from '../../src/index.js';
import { BACKEND } from '../helpers.js';
import { EDU_DEVICE, EDU_VENDOR, EduDriver } from './edu.js';

/** Every edu function of the backend's machine, in BDF order (bound to VFIO or not). */
export function findEdus(binding: Binding): PciDevice[] {
  return findPciDevices(binding, { vendor: EDU_VENDOR, device: EDU_DEVICE });
}

/** The machine as the test files see it at load time, for their skip conditions. */
export interface DeviceMachine {
  /** An edu with a VFIO cdev that is alone in its IOMMU group (the VM's 0000:00:01.0). */
  soloEdu: string | null;
  /** Two edus with VFIO cdevs that share one IOMMU group (the VM's 01:01.0 and 01:02.0). */
  groupedEdus: [string, string] | null;
  /** Why the device tests cannot run here, for the describe titles ('' when they can). */
  noSoloReason: string;
  noGroupReason: string;
}

export function deviceMachine(): DeviceMachine {
  const binding = openBinding(BACKEND);
  const edus = findEdus(binding);
  const why = `no edu (1234:11e8) bound to vfio-pci on the ${BACKEND} backend`
    + (BACKEND === 'sim' ? ': its machine has no edu, or none on vfio-pci' : ' (run in the test VM)');
  const solo = edus.find((d) => d.vfioCdev !== null && d.groupDevices().length === 1)?.bdf ?? null;
  const byGroup = new Map<number, string[]>();
  for (const d of edus) {
    const g = d.iommuGroup;
    if (g === null || d.vfioCdev === null) continue;
    byGroup.set(g, [...(byGroup.get(g) ?? []), d.bdf]);
  }
  const pair = [...byGroup.values()].find((l) => l.length >= 2);
  return {
    soloEdu: solo,
    groupedEdus: pair ? [pair[0]!, pair[1]!] : null,
    noSoloReason: solo ? '' : why,
    noGroupReason: pair ? '' : `${why}, or no two of them share an IOMMU group`,
  };
}

// ---- cross-process device claims ---------------------------------------------------------------

function lockPath(bdf: string): string {
  return join(tmpdir(), `ioasid-device-${bdf.replace(/:/g, '_')}.lock`);
}

function holderAlive(path: string): boolean {
  try {
    const pid = Number(readFileSync(path, 'utf8'));
    if (!pid) return true; // being written right now
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claim devices for this process (in BDF order, so two claimers cannot deadlock), waiting while
 * another live process holds one. Returns the release function.
 */
export function claimDevices(bdfs: readonly string[], timeoutMs = 300_000): () => void {
  const held: string[] = [];
  const t0 = Date.now();
  for (const bdf of [...bdfs].sort()) {
    const path = lockPath(bdf);
    for (;;) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, String(process.pid));
        closeSync(fd);
        held.push(path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        if (!holderAlive(path)) {
          try {
            unlinkSync(path);
          } catch {
            // another claimer removed it first
          }
          continue;
        }
        if (Date.now() - t0 > timeoutMs) throw new Error(`device ${bdf} still claimed after ${timeoutMs} ms`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    }
  }
  return () => {
    for (const p of held.splice(0)) unlinkSync(p);
  };
}

/** What useEdu() gives each test. */
export interface EduFixture {
  ctx: Iommufd;
  dev: VfioDevice;
  ioas: Ioas;
  edu: EduDriver;
}

/**
 * A suite that drives the edu at `bdf`: the device is claimed for the suite; each test gets a
 * fresh iommufd, the device bound to it and attached to a fresh IOAS, and the driver initialised,
 * all closed after the test.
 */
export function useEdu(bdf: string): EduFixture {
  const f = {} as EduFixture;
  let release: () => void = () => {};
  beforeAll(() => {
    release = claimDevices([bdf]);
  });
  afterAll(() => release());
  beforeEach(() => {
    f.ctx = Iommufd.open({ backend: BACKEND });
    f.dev = VfioDevice.open(f.ctx.binding, bdf);
    f.dev.bind(f.ctx);
    f.ioas = f.ctx.allocIoas();
    f.dev.attach(f.ioas);
    f.edu = new EduDriver(f.dev);
    f.edu.init();
  });
  afterEach(() => {
    f.edu.remove();
    f.dev.close();
    f.ctx.close();
  });
  return f;
}
