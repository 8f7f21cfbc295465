/**
 * Every struct layout, size, minimum size and request number in src/ioasid/uapi.ts must equal
 * what gcc computes from the real kernel headers (the Debian linux-source-7.3 tree, or the
 * headers the test kernel exported). Missing headers skip the test with the reason; under CI
 * they fail it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { uapi } from '../src/index.js';

function findHeaders(): { inc: string[]; why?: string } {
  const env = process.env.IOASID_KERNEL_HEADERS;
  if (env && existsSync(join(env, 'linux/iommufd.h'))) return { inc: [env] };
  const cache = process.env.IOASID_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ioasid');
  const src = join(cache, 'src');
  const tree = existsSync(src) ? readdirSync(src).find((d) => d.startsWith('linux-source-7.3') && existsSync(join(src, d, 'Makefile'))) : undefined;
  if (tree && existsSync(join(src, tree, 'include/uapi/linux/iommufd.h'))) {
    return { inc: [join(src, tree, 'include/uapi'), join(src, tree, 'drivers/iommu/iommufd')] };
  }
  return { inc: [], why: 'no kernel headers: run scripts/vm/fetch-source.sh or set IOASID_KERNEL_HEADERS' };
}

const { inc, why } = findHeaders();
const haveGcc = (() => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skipReason = why ?? (haveGcc ? undefined : 'gcc not found');

function cProgram(): { src: string; expected: string[] } {
  const lines: string[] = [];
  const expected: string[] = [];
  const emit = (cexpr: string, value: number, label: string) => {
    lines.push(`  printf("%s %lu\\n", "${label}", (unsigned long)(${cexpr}));`);
    expected.push(`${label} ${value}`);
  };
  const structs = [...Object.values(uapi.IOCTLS).map((d) => d.struct), uapi.iommu_iova_range];
  for (const s of structs) {
    emit(`sizeof(struct ${s.name})`, s.size, `${s.name}.sizeof`);
    for (const f of s.fields) emit(`offsetof(struct ${s.name}, ${f.name})`, f.off, `${s.name}.${f.name}`);
  }
  for (const d of Object.values(uapi.IOCTLS)) emit(d.name, d.request, `${d.name}.request`);
  const t = uapi.iommu_test_cmd;
  emit('sizeof(struct iommu_test_cmd)', t.size, 'iommu_test_cmd.sizeof');
  for (const f of ['size', 'op', 'id', '__reserved', 'last']) emit(`offsetof(struct iommu_test_cmd, ${f})`, t.off[f]!, `iommu_test_cmd.${f}`);
  for (const [m, s] of Object.entries(uapi.iommu_test_cmd_members)) {
    for (const f of s.fields) emit(`offsetof(struct iommu_test_cmd, ${m}.${f.name})`, f.off, `iommu_test_cmd.${m}.${f.name}`);
  }
  emit('IOMMU_TEST_CMD', uapi.IOMMU_TEST_CMD.request, 'IOMMU_TEST_CMD.request');
  for (const [k, v] of Object.entries(uapi.IOMMU_TEST_OP)) emit(`IOMMU_TEST_OP_${k}`, v, `IOMMU_TEST_OP_${k}`);
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include <linux/iommufd.h>\n#include "iommufd_test.h"\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`;
  return { src, expected };
}

describe('uAPI layout matches the kernel headers', () => {
  it.skipIf(!!skipReason && !process.env.CI)(`every offset, size and request number (${skipReason ?? inc.join(':')})`, () => {
    expect(skipReason, 'kernel headers and gcc are required under CI').toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'ioasid-layout-'));
    const { src, expected } = cProgram();
    writeFileSync(join(dir, 'layout.c'), src);
    const incs = inc.flatMap((i) => ['-I', i]);
    const testHdr = inc.map((i) => join(i, 'iommufd_test.h')).find(existsSync);
    expect(testHdr, 'iommufd_test.h').toBeDefined();
    execFileSync('gcc', ['-w', '-o', join(dir, 'layout'), ...incs, join(dir, 'layout.c')]);
    const out = execFileSync(join(dir, 'layout'), { encoding: 'utf8' }).trim().split('\n');
    expect(out).toEqual(expected);
    // min sizes are offsetofend(last field), as in the kernel's IOCTL_OP table
    for (const d of Object.values(uapi.IOCTLS)) expect(d.minSize, d.name).toBe(uapi.offsetofend(d.struct, d.last));
  });
});
