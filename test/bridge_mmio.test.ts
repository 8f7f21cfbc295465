/**
 * mmap of a VFIO BAR through the preload bridge (docs/bridge.md, "Mapping a BAR"): a C program
 * (test/bridge/bar_mmio.c) maps the edu's BAR0 and makes ordinary loads and stores to its
 * registers, each width and addressing form compilers emit; it checks the mmap refusals, a DMA
 * mapping of the BAR's address, SIGBUS with memory decode off, a forked child, protections and
 * partial unmaps. Against the sim through the bridge it must print what the real kernel prints
 * (EXPECTED, from the 7.3 kernel in the test VM); in the VM the same binary also runs natively
 * and must print the same.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import { runBridged } from '../src/bridge/index.js';
import { cc, selftests } from './bridge_build.js';
import { claimDevices, findEdus } from './drivers/devices.js';
import { BACKEND } from './helpers.js';

const IN_GUEST = process.env.IOASID_IN_GUEST === '1';
const built = selftests();
const BDF = '0000:00:01.0';

/**
 * What the 7.3 kernel prints for the edu at 00:01.0 (recorded in the test VM, which checks it on
 * every run); `pick` gives the group's line and the cdev's where they differ.
 */
function expected(mode: 'group' | 'cdev'): string {
  const pick = (group: string, cdev: string): string => (mode === 'group' ? group : cdev);
  return `${[
    'BAR0: size 0x100000, flags 0x7',
    'memory decode at open: on',
    'BAR0 mapped where asked',
    'mmap MAP_PRIVATE: Invalid argument',
    'mmap past the end of BAR0: Invalid argument',
    'mmap at an offset past BAR0: Invalid argument',
    'mmap of BAR1 (none): Invalid argument',
    'mmap of the config region: Invalid argument',
    'mmap MAP_SHARED_VALIDATE|MAP_SYNC: Operation not supported',
    'mmap MAP_FIXED at an unaligned address: Invalid argument',
    'mmap MAP_FIXED_NOREPLACE over a mapping: File exists',
    'id (u32): 0x010000ed',
    'id (movsxd): 0x00000000010000ed',
    'liveness after 0x12345678 (u32 store, u32 load): 0xedcba987',
    'liveness after 0x789abcde (r9d to 4(%r12), (%r13)): 0x87654321',
    'liveness (SIB, index 1 scale 4): 0x87654321',
    'liveness (movsxd): 0xffffffff87654321',
    'liveness after u8 and u16 stores (immediates, registers): 0x87654321',
    'id (u8): 0x00, into %ah: 0x1111111111110011',
    'id (u16): 0x0000, movzbw: 0xaaaaaaaaaaaa0000',
    'id (movsbl, movswq): 0x0000000000000000 0x0000000000000000',
    'id (u64, below 0x80): 0xffffffffffffffff',
    'DMA source after movq $-0x10000000 (disp32): 0xfffffffff0000000',
    'DMA destination (u64), low half (u32): 0x1122334455667788 0x55667788',
    'factorial of 10: 3628800',
    'RIP-relative: id 0x010000ed, liveness after 0x0badcafe 0xf4523501',
    'after anonymous memory replaced it: 0',
    pick('VFIO_IOMMU_MAP_DMA of BAR0 with memory decode on: mapped, then unmapped 0x100000', 'IOMMU_IOAS_MAP of BAR0 with memory decode on: Bad address'),
    'memory decode off, a load: killed by SIGBUS',
    'child: SIGBUS, BUS_ADRERR at BAR0+0x4',
    'memory decode off, a store with a SIGBUS handler: exited 0',
    'pread of BAR0 with memory decode off: Input/output error',
    pick('VFIO_IOMMU_MAP_DMA of BAR0 with memory decode off: Bad address', 'IOMMU_IOAS_MAP of BAR0 with memory decode off: Bad address'),
    'memory decode on again: id 0x010000ed',
    'child: id 0x010000ed, liveness after 0xf0f0f0f0 0x0f0f0f0f',
    'a forked child using the mapping: exited 0',
    'parent after the child: liveness 0x0f0f0f0f',
    'PROT_READ mapping: id 0x010000ed',
    'PROT_READ mapping, a store: killed by SIGSEGV',
    'child: SIGSEGV, SEGV_ACCERR at +0x4',
    "PROT_READ mapping, a store, the program's handler: exited 0",
    'after mprotect(PROT_READ|PROT_WRITE), liveness after 0x01020304: 0xfefdfcfb',
    'PROT_NONE after mprotect, a load: killed by SIGSEGV',
    '3 pages, the middle one unmapped: id 0x010000ed, page 2 at 0x2000: 0xffffffff',
    'a load from the unmapped page: killed by SIGSEGV',
    'child: SIGSEGV, SEGV_MAPERR at +0x1000',
    "a load from the unmapped page, the program's handler: exited 0",
    'after closing the device fd: id 0x010000ed',
    pick('VFIO_GROUP_UNSET_CONTAINER with BAR0 still mapped: Device or resource busy', 'VFIO_DEVICE_BIND_IOMMUFD of a new fd with BAR0 still mapped: Invalid argument'),
    'munmap: 0',
    pick('VFIO_GROUP_UNSET_CONTAINER after munmap: done', 'VFIO_DEVICE_BIND_IOMMUFD of a new fd after munmap: bound'),
  ].join('\n')}\n`;
}

/** The first lines, before the program's checks: the BAR's region and its mapping. */
const HEAD = 'BAR0: size 0x100000, flags 0x7\nmemory decode at open: on\nBAR0 mapped where asked\n';

/** The edu's VFIO nodes on the backend's machine (the sim's q35Edu, the VM's own). */
function eduArgs(mode: 'group' | 'cdev'): string[] {
  const edu = findEdus(openBinding(BACKEND)).find((d) => d.bdf === BDF);
  if (!edu) throw new Error(`no edu at ${BDF} on the ${BACKEND} backend`);
  return mode === 'group' ? ['group', `/dev/vfio/${edu.iommuGroup}`, BDF] : ['cdev', edu.vfioCdev!];
}

describe.skipIf(!built)('bridge: mmap of a VFIO BAR, loads and stores reaching the device', () => {
  const bin = built ? cc(built, 'test/bridge/bar_mmio.c') : '';

  /** The program natively on the kernel (the VM only), holding the device as the device tests do. */
  function native(args: string[]): string {
    const release = claimDevices([BDF]);
    try {
      return execFileSync(bin, args, { encoding: 'utf8' });
    } finally {
      release();
    }
  }

  for (const mode of ['group', 'cdev'] as const) {
    it(`edu BAR0 through ${mode === 'group' ? 'its VFIO group and a type1v2 container' : 'its cdev bound to an iommufd'}: the sim through the bridge prints what the kernel prints`, async () => {
      const args = eduArgs(mode);
      const r = await runBridged(bin, args);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(expected(mode));
      expect(r.code).toBe(0);
      if (IN_GUEST) expect(native(args)).toBe(expected(mode));
    });
  }

  // A limit of the bridge, not of the model: its fault handler emulates the moves compilers emit
  // for MMIO (mov, movzx, movsx, movsxd); the kernel maps the BAR's pages and the CPU does any access.
  it('an instruction the fault handler does not emulate (an SSE load from the BAR): SIGSEGV and a line on stderr, where the kernel does the access', async () => {
    const args = [...eduArgs('cdev'), 'sse'];
    const r = await runBridged(bin, args);
    expect(r.stdout).toBe(`${HEAD}SSE load (movdqu): killed by SIGSEGV\n`);
    expect(r.stderr).toMatch(/^ioasid bridge: the instruction at 0x[0-9a-f]+ accesses BAR memory at 0x[0-9a-f]+ in a way the bridge does not emulate \(only mov, movzx, movsx, movsxd\); f3 0f 6f /);
    expect(r.code).toBe(0);
    // on the kernel the CPU makes the access; edu answers all ones (below 0x80 it serves 4-byte accesses only)
    if (IN_GUEST) expect(native(args)).toBe(`${HEAD}child: SSE load: 0xffffffff\nSSE load (movdqu): exited 0\n`);
  });
});
