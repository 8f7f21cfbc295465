/**
 * Building C programs for the bridge tests: the kernel's selftest build (scripts/selftests/build.sh,
 * cached by test-all.sh before the tiers) with linux-source-7.3's uAPI headers, and cc() against them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from './doc_examples.js';

/** The selftest build directory (binaries and <dir>/usr/include), or null when it cannot be built here. */
export function selftests(): string | null {
  try {
    return execFileSync('bash', [join(root, 'scripts/selftests/build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** A scratch directory for this test process. */
export const scratch = join(tmpdir(), `ioasid-bridge-test-${process.pid}`);

/** Compile a C file of the repository against the selftest build's uAPI headers; the binary's path. */
export function cc(built: string, src: string): string {
  mkdirSync(scratch, { recursive: true });
  const bin = join(scratch, src.replace(/\W+/g, '_'));
  execFileSync('cc', ['-O2', '-Wall', '-isystem', join(built, 'usr/include'), '-o', bin, join(root, src)]);
  return bin;
}
