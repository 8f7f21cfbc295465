#!/usr/bin/env node
// Regenerate the mode x difference table of docs/migration.md from a real-kernel run.
//
//   node scripts/differences-table.mjs              run test/migration_differences.test.ts in the
//                                                  test VM with IOASID_WRITE_DIFFERENCES=1, then splice
//   node scripts/differences-table.mjs --from FILE  splice a table a run already wrote
//
// In the VM the repository is read-only: the test writes the observed table to the VM's results
// share (differences.md), which is a host directory; this script puts it between
// <!-- differences:begin --> and <!-- differences:end -->. Cells the run could not fill ('?') are
// refused. The VM run's own failures are expected when the kernel changed its answers: they name
// the cells that moved, and the spliced table carries the new ones.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DOC = join(root, 'docs/migration.md');
const BEGIN = '<!-- differences:begin -->';
const END = '<!-- differences:end -->';

let table;
const from = process.argv.indexOf('--from');
if (from >= 0) {
  table = readFileSync(process.argv[from + 1], 'utf8');
} else {
  const results = mkdtempSync(join(tmpdir(), 'ioasid-differences.'));
  const run = spawnSync('bash', [join(root, 'scripts/vm/run-in-guest.sh'), '--results', results, '--',
    'node_modules/.bin/vitest', 'run', '--configLoader', 'native', 'test/migration_differences.test.ts'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, IOASID_BACKEND: 'linux', IOASID_WRITE_DIFFERENCES: '1' },
  });
  const out = join(results, 'differences.md');
  if (!existsSync(out)) {
    console.error(`differences-table: the VM run wrote no table (exit ${run.status}; see ${results})`);
    process.exit(1);
  }
  if (run.status !== 0) console.error('differences-table: the run disagreed with the committed table; splicing what the kernel answered');
  table = readFileSync(out, 'utf8');
}
if (/\| \? \|/.test(table) || !table.startsWith('| # |')) {
  console.error('differences-table: the table is incomplete (a cell is "?"), not spliced');
  process.exit(1);
}
const doc = readFileSync(DOC, 'utf8');
const b = doc.indexOf(BEGIN);
const e = doc.indexOf(END);
if (b < 0 || e < b) {
  console.error(`differences-table: ${DOC} has no ${BEGIN} ... ${END}`);
  process.exit(1);
}
writeFileSync(DOC, `${doc.slice(0, b + BEGIN.length)}\n${table.trimEnd()}\n${doc.slice(e)}`);
console.log(`differences-table: docs/migration.md updated (${table.trimEnd().split('\n').length - 2} rows)`);
