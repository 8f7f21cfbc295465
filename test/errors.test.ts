/**
 * The errno table and its names: every errno the kernel can return has its name (errnoName(105)
 * is ENOBUFS, not E105), aliases give the names the code uses, and the table equals the kernel's
 * own headers and, for every code Node knows, os.constants.errno of a Linux host.
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRNO, IommuError, errnoName, type ErrnoCode } from '../src/index.js';
import { findKernelTree } from '../bench/kernel-headers.js';
import { BACKEND } from './helpers.js';

const tree = findKernelTree();

describe(`errno names [${BACKEND}]`, () => {
  it('names what the old 30-entry table did not, and IommuError carries the name', () => {
    expect(errnoName(105)).toBe('ENOBUFS');
    expect(errnoName(27)).toBe('EFBIG');
    expect(errnoName(524)).toBe('ENOTSUPP');
    expect(new IommuError(110, 'x').code).toBe('ETIMEDOUT');
    expect(errnoName(41)).toBe('E41'); // Linux leaves 41 and 58 unused
  });

  it('aliases: EAGAIN, EDEADLK and EOPNOTSUPP are the names given', () => {
    expect(errnoName(ERRNO.EWOULDBLOCK)).toBe('EAGAIN');
    expect(errnoName(ERRNO.EDEADLOCK)).toBe('EDEADLK');
    expect(errnoName(ERRNO.ENOTSUP)).toBe('EOPNOTSUPP');
  });

  it.skipIf(process.platform !== 'linux')('every code in os.constants.errno has the same number here (Linux host)', () => {
    const node = Object.entries(constants.errno);
    expect(node.length).toBeGreaterThan(70);
    for (const [name, n] of node) expect([name, ERRNO[name as ErrnoCode]]).toEqual([name, n]);
  });

  it.skipIf(!tree)(`equals the kernel's errno headers${tree ? '' : ' (skipped: no linux-source-7.3 tree)'}`, () => {
    const defs = new Map<string, number>();
    for (const h of ['include/uapi/asm-generic/errno-base.h', 'include/uapi/asm-generic/errno.h', 'include/linux/errno.h']) {
      for (const m of readFileSync(join(tree!, h), 'utf8').matchAll(/^#define\s+(E\w+)\s+(\w+)/gm)) {
        const v = /^\d+$/.test(m[2]!) ? Number(m[2]) : defs.get(m[2]!);
        if (v !== undefined) defs.set(m[1]!, v);
      }
    }
    // EFSBADCRC/EFSCORRUPTED are filesystem-internal aliases; every number they use is named.
    for (const [name, n] of defs) {
      if (name === 'EFSBADCRC' || name === 'EFSCORRUPTED') continue;
      expect([name, ERRNO[name as ErrnoCode]]).toEqual([name, n]);
    }
    for (const n of new Set(defs.values())) expect(errnoName(n)).not.toBe(`E${n}`);
  });
});
