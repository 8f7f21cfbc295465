/**
 * The known differences between the kernel's type1 driver and iommufd's compat layer, measured:
 * every probe of src/migration/differences.ts runs in each of the six IOMMU modes, one test per
 * difference and mode, and its outcome must equal the cell of the table committed in
 * docs/migration.md (between <!-- differences:begin --> and <!-- differences:end -->), which a run
 * in the test VM wrote. So the suite fails on either tier when the kernel (or the sim) answers
 * differently from the committed table. Differences the VM cannot show have a test that their
 * reason still holds.
 *
 * Regenerate the table (docs/migration.md, "Where the modes differ"): `node scripts/differences-table.mjs`
 * runs this file in the VM with IOASID_WRITE_DIFFERENCES=1, which writes the observed table to the
 * VM's results share, and splices it into docs/migration.md.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DIFFERENCES, observe, parseDifferences, renderDifferences, unshownHolds, type DifferenceTable,
} from '../src/migration/differences.js';
import { IOMMU_MODE_NAMES } from '../src/migration/modes.js';
import { BACKEND } from './helpers.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';

const machine = deviceMachine();
const bdf = machine.soloEdu;
const committed = parseDifferences(readFileSync(new URL('../docs/migration.md', import.meta.url), 'utf8'));
const KERNEL_CONFIG = readFileSync(new URL('../scripts/vm/kernel.config', import.meta.url), 'utf8');
const WRITE = process.env.IOASID_WRITE_DIFFERENCES === '1' && BACKEND === 'linux';
/** Where the guest may write: the VM's results share (the repository is read-only there). */
const OUT = process.env.IOASID_DIFFERENCES_OUT ?? '/run/results/differences.md';

/**
 * Rows the sim cannot reproduce: why, and what its probe answers there instead (checked, so the
 * skip goes when the sim learns it). None today: the sim learned BAR mmaps for row 1.
 */
const SIM_CANNOT: Record<string, { why: string; answers: string }> = {};

const observed: DifferenceTable = {};

describe.skipIf(!bdf)(`the known differences, in every mode [${BACKEND}]${bdf ? '' : ` (skipped: ${machine.noSoloReason})`}`, () => {
  let release: () => void = () => {};
  beforeAll(() => {
    release = claimDevices([bdf!]);
  });
  afterAll(() => {
    release();
    if (WRITE) writeFileSync(OUT, `${renderDifferences(observed)}\n`);
  });

  it('the committed table lists every difference, in order, with its title', () => {
    expect(committed.ids).toEqual(DIFFERENCES.map((d) => d.id));
    expect(committed.titles).toEqual(Object.fromEntries(DIFFERENCES.map((d) => [d.id, d.title])));
  });

  for (const d of DIFFERENCES) {
    describe(`${d.id}: ${d.title}`, () => {
      if (d.unshown) {
        it(`not shown here, and the reason holds: ${d.unshown.reason}`, () => {
          expect(unshownHolds(d, BACKEND)).toBe(true);
          if (d.unshown!.config) expect(KERNEL_CONFIG).not.toMatch(new RegExp(`^${d.unshown!.config}=[ym]`, 'm'));
          observed[d.id] = Object.fromEntries(IOMMU_MODE_NAMES.map((m) => [m, '—']));
          expect(committed.cells[d.id]).toEqual(observed[d.id]);
        });
        return;
      }
      const simCannot = BACKEND === 'sim' ? SIM_CANNOT[d.id] : undefined;
      if (simCannot) {
        it(`the sim's reason to skip holds: its probe answers ${simCannot.answers} in every mode`, () => {
          for (const mode of IOMMU_MODE_NAMES) expect(observe(d, mode, { backend: BACKEND, bdf: bdf! })).toBe(simCannot.answers);
        });
      }
      for (const mode of IOMMU_MODE_NAMES) {
        it.skipIf(simCannot !== undefined)(`${mode}${simCannot ? ` (skipped: ${simCannot.why})` : ''}`, () => {
          const got = observe(d, mode, { backend: BACKEND, bdf: bdf! });
          (observed[d.id] ??= {})[mode] = got;
          expect(got).toBe(committed.cells[d.id]?.[mode]);
        });
      }
    });
  }
});
