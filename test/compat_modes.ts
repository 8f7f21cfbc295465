/**
 * What the compat tests share: the modes of the legacy container API, which of them the tier's
 * machine can run (the legacy container and group nodes exist, or the skip reason naming the
 * missing piece), the edus to drive, and a reversible probe of a container's mappings.
 */
import type { Binding } from '../src/backends/types.js';
import { openBinding } from '../src/backends/index.js';
import { PciDevice } from '../src/device/pci.js';
import { IommuError, type CompatMode, type IommuType, type VfioContainer, type UserMemory } from '../src/index.js';
import { BACKEND } from './helpers.js';
import { deviceMachine } from './drivers/devices.js';

export const machine = deviceMachine();

export interface ModeCase {
  readonly mode: CompatMode;
  readonly iommuType: IommuType;
  /** Why this mode cannot run here ('' when it can). */
  readonly skip: string;
  /** 'type1 (type1v2)', 'kernel-compat (type1)', ... */
  readonly name: string;
}

function exists(binding: Binding, dir: string, name: string): boolean {
  try {
    return binding.readdir(dir).includes(name);
  } catch {
    return false;
  }
}

/** Why a mode cannot run on this tier's machine for a device in `group`, or ''. */
export function missingFor(mode: CompatMode, group: number | null): string {
  if (group === null) return 'no edu bound to vfio-pci';
  if (mode === 'iommufd') return '';
  const b = openBinding(BACKEND);
  // The sim's default machine publishes them; a machine or kernel without them lacks the option.
  const [tier, noContainer, noGroups] = BACKEND === 'sim'
    ? ['sim', ' (a machine without CONFIG_VFIO_CONTAINER)', ' (a machine without CONFIG_VFIO_GROUP)']
    : ['kernel', ' (CONFIG_VFIO_CONTAINER=n)', ' (CONFIG_VFIO_GROUP=n)'];
  const container = mode === 'type1' && !exists(b, '/dev/vfio', 'vfio');
  const nodes = !exists(b, '/dev/vfio', String(group));
  if (container && nodes) return `${tier}: no /dev/vfio/vfio container or /dev/vfio/N group nodes${noGroups}`;
  if (container) return `${tier}: no /dev/vfio/vfio container${noContainer}`;
  return nodes ? `${tier}: no /dev/vfio/N group nodes${noGroups}` : '';
}

const soloGroup = machine.soloEdu ? new PciDevice(openBinding(BACKEND), machine.soloEdu).iommuGroup : null;

export function modeCase(mode: CompatMode, iommuType: IommuType, group = soloGroup): ModeCase {
  return { mode, iommuType, skip: missingFor(mode, group), name: `${mode} (${iommuType})` };
}

/** Every mode with both IOMMU types, for the solo edu's group. */
export const ALL_MODES: readonly ModeCase[] = (['type1', 'kernel-compat', 'iommufd'] as const).flatMap((m) =>
  (['type1v2', 'type1'] as const).map((t) => modeCase(m, t)));

/** ' (skipped: why)' for a title, or ''. */
export const why = (skip: string): string => (skip ? ` (skipped: ${skip})` : '');

/** The errno of a call, or 'ok' with its result. */
export function outcome(fn: () => unknown): string {
  try {
    const r = fn();
    return typeof r === 'bigint' || typeof r === 'number' ? `ok ${r}` : 'ok';
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

/**
 * Which of `iovas` hold a mapping, probed without changing anything in the end: a one-page
 * MAP_DMA there fails with EEXIST when something is mapped, and is undone when it succeeds.
 */
export function probeMappings(c: VfioContainer, page: UserMemory, iovas: readonly bigint[]): string[] {
  return iovas.map((iova) => {
    try {
      c.mapDma(page, iova);
    } catch (e) {
      if (e instanceof IommuError) return `${iova.toString(16)}:${e.code}`;
      throw e;
    }
    c.unmapDma(iova, page.byteLength);
    return `${iova.toString(16)}:free`;
  });
}
