/**
 * The preload bridge (docs/bridge.md): unmodified C programs against a sim machine. The kernel's
 * own selftest binaries, built from linux-source-7.3 (scripts/selftests/build.sh): iommufd,
 * iommufd_fail_nth and the VFIO ones edu can run (vfio_dma_mapping_test in its five iommu modes,
 * vfio_iommufd_setup_test, vfio_pci_device_test), run against the sim through the bridge and, in
 * the VM, natively on the real 7.3 kernel in the same run; every case must get the kernel's
 * verdict except the ones listed below with their reasons.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cap_effective, libc } from '../src/backends/linux/libc.js';
import { BridgeServer, compareTap, parseTap, preloadLibrary, runBridged } from '../src/bridge/index.js';
import { cc as cc_, scratch, selftests } from './bridge_build.js';
import { claimDevices } from './drivers/devices.js';
import { root } from './doc_examples.js';
import { ioasid } from './helpers.js';

const IN_GUEST = process.env.IOASID_IN_GUEST === '1';

const built = selftests();
const cc = (src: string): string => cc_(built!, src);

/**
 * Cases whose verdict on the sim differs from the kernel's, each with its reason. The test fails
 * when one more differs, and when one of these stops differing (then it leaves this list).
 */
const KNOWN: Record<string, string> = {};

/** The edu device the VFIO selftests drive: the VM's first edu, which the q35Edu preset has at the same address. */
const EDU_BDF = '0000:00:01.0';

/** A selftest binary of the build, how it is run, and the kernel's verdicts recorded in the VM (test/bridge/kernel-NAME.verdicts.json). */
interface Selftest {
  name: string;
  path: string;
  env: Record<string, string>;
  /** The edu devices it takes (the VM tier claims them from other test files). */
  devices: string[];
}

const SELFTESTS: Selftest[] = [
  { name: 'iommufd', path: 'iommufd', env: {}, devices: [] },
  { name: 'iommufd_fail_nth', path: 'iommufd_fail_nth', env: {}, devices: [] },
  ...['vfio_dma_mapping_test', 'vfio_iommufd_setup_test', 'vfio_pci_device_test'].map((name) => ({
    name,
    path: `vfio/${name}`,
    env: { VFIO_SELFTESTS_BDF: EDU_BDF },
    devices: [EDU_BDF],
  })),
];

const verdictsFile = (t: Selftest) => join(root, `test/bridge/kernel-${t.name}.verdicts.json`);
/** The kernel's recorded verdicts of `t`'s cases ({} before the first record). */
const kernelVerdicts = (t: Selftest): Record<string, string> =>
  existsSync(verdictsFile(t)) ? (JSON.parse(readFileSync(verdictsFile(t), 'utf8')) as Record<string, string>) : {};
/** IOASID_WRITE_VERDICTS=1 in the VM: write the kernel's verdicts to the results directory instead of checking them. */
const WRITE_VERDICTS = process.env.IOASID_WRITE_VERDICTS === '1' && IN_GUEST;

/** What the VM's kernel run has that the host's sim run may lack. */
interface SimRunEnv {
  /** treeHash() of the tree the sim tier ran. */
  tree: string;
  /** Whether the host reserved hugetlb pages for the run, as the VM's guest-init.sh does. */
  hugepages: boolean;
  /** Whether the host run held CAP_SYS_RESOURCE, as root in the VM does. */
  capSysResource: boolean;
}

const RESULTS = join(root, '.test-results', 'bridge');
const simTap = (t: Selftest) => join(RESULTS, `${t.name}-sim.tap`);
const simEnv = (t: Selftest) => join(RESULTS, `${t.name}-sim.json`);
/** scripts/vm/guest-init.sh reserves this many 2 MiB pages. */
const VM_HUGEPAGES = 96;
const CAP_SYS_RESOURCE = 24;
const LOCK_EX = 2;

/** The cases that map MAP_HUGETLB memory: they need reserved hugetlb pages. */
const HUGETLB_CASES = [
  ...['vfio_type1_iommu', 'vfio_type1v2_iommu', 'iommufd_compat_type1', 'iommufd_compat_type1v2', 'iommufd'].map((m) => `vfio_dma_mapping_test.${m}_anonymous_hugetlb_2mb.dma_map_unmap`),
  ...['no_domain', 'mock_domain', 'two_mock_domain', 'mock_domain_limit'].map((v) => `iommufd_ioas.${v}.access_domain_destory`),
  ...['one_domain_hugepage', 'two_domains_hugepage'].flatMap((v) => ['basic', 'all_aligns', 'all_aligns_copy'].map((t) => `iommufd_mock_domain.${v}.${t}`)),
  ...['domain_dirty64M_huge', 'domain_dirty128M_huge'].flatMap((v) => ['enforce_dirty', 'set_dirty_tracking', 'pasid_set_dirty_tracking', 'device_dirty_capability', 'get_dirty_bitmap', 'get_dirty_bitmap_no_clear'].map((t) => `iommufd_dirty_tracking.${v}.${t}`)),
  'vfio_compat_mock_domain.Ver1v2.huge_map', 'vfio_compat_mock_domain.Ver1v0.huge_map',
];

/** The cases whose verdict follows from what the host lacked (the sim answered as the kernel would there). */
function environmentDifferences(env: SimRunEnv): Record<string, string> {
  const out: Record<string, string> = {};
  if (!env.capSysResource) {
    for (const c of ['iommufd.global_options', 'change_process.account_user.basic', 'change_process.account_mm.basic']) {
      out[c] = 'the host run lacked CAP_SYS_RESOURCE, which setting IOMMU_OPTION_RLIMIT_MODE needs (EPERM, as the kernel answers there)';
    }
  }
  if (!env.hugepages) for (const c of HUGETLB_CASES) out[c] = 'the host could not reserve hugetlb pages (mmap MAP_HUGETLB fails in the program itself)';
  return out;
}

/**
 * A C program's output given the edu's address: natively on the kernel in the VM (the edu claimed
 * from other test files), through the bridge on the q35Edu sim machine elsewhere.
 */
async function runOnMachine(bin: string): Promise<string> {
  if (IN_GUEST) {
    const release = claimDevices([EDU_BDF]);
    try {
      return execFileSync(bin, [EDU_BDF], { encoding: 'utf8' });
    } finally {
      release();
    }
  }
  const r = await runBridged(bin, [EDU_BDF]);
  expect(r.stderr).toBe('');
  return r.stdout;
}

/** The differences expected among `cases`: the known ones and those the host's environment explains. */
function expectedDifferences(cases: string[], env: SimRunEnv): Record<string, string> {
  const all = { ...KNOWN, ...environmentDifferences(env) };
  return Object.fromEntries(cases.filter((c) => c in all).map((c) => [c, all[c]!]));
}

/** A hash of the library's source (src/, native/): which tree a result came from. */
function treeHash(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else h.update(`${relative(root, p)}\0`).update(readFileSync(p));
    }
  };
  for (const d of ['src', 'native']) walk(join(root, d));
  return h.digest('hex').slice(0, 16);
}

function hasCapability(cap: number): boolean {
  return ((cap_effective() >> BigInt(cap)) & 1n) === 1n;
}

/**
 * Run fn with `n` hugetlb pages reserved, as the VM's guest-init.sh reserves them, and put the
 * host's own count back afterwards. Without root (or a writable /proc/sys) nothing is reserved.
 */
async function withHugepages<T>(n: number, fn: () => Promise<T>): Promise<{ result: T; reserved: boolean }> {
  const knob = '/proc/sys/vm/nr_hugepages';
  // Runs on one host take turns: one run's restore must not take the pages from under another's.
  const lock = openSync(join(tmpdir(), 'ioasid-hugepages.lock'), 'w');
  libc().flock(lock, LOCK_EX);
  let before: string | null = null;
  try {
    try {
      before = readFileSync(knob, 'utf8').trim();
      if (Number(before) < n) writeFileSync(knob, String(n));
    } catch {
      before = null;
    }
    const reserved = before !== null && Number(readFileSync(knob, 'utf8').trim()) >= n;
    try {
      return { result: await fn(), reserved };
    } finally {
      if (before !== null && Number(before) < n) writeFileSync(knob, before);
    }
  } finally {
    closeSync(lock); // releases the lock
  }
}

describe.skipIf(!built)('bridge: unmodified programs against the sim', () => {
  it('a program that never touches the sim runs as without the bridge (a shell, ls with libselinux\'s early fopen)', async () => {
    const r = await runBridged('sh', ['-c', `ls -d ${JSON.stringify(root)} && echo "$IOASID_BRIDGE_SOCKET" | grep -c sock`]);
    expect(r).toEqual({ code: 0, stdout: `${root}\n1\n`, stderr: '' });
  });

  it('serves only from a private directory (mode 0700)', async () => {
    await using server = await BridgeServer.listen();
    expect(statSync(dirname(server.socketPath)).mode & 0o777).toBe(0o700);
  });

  it.skipIf(process.getuid?.() !== 0)('another uid cannot reach the socket', async () => {
    await using server = await BridgeServer.listen();
    const probe = `require('net').createConnection(${JSON.stringify(server.socketPath)}).on('error', (e) => { console.log(e.code); process.exit(0) }).on('connect', () => { console.log('connected'); process.exit(0) })`;
    const got = execFileSync(process.execPath, ['-e', probe], { uid: 65534, gid: 65534, encoding: 'utf8' }).trim();
    expect(got).toBe('EACCES');
  });

  it('a malformed message gets EPROTO and the server goes on serving', async () => {
    await using server = await BridgeServer.listen();
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = createConnection(server.socketPath);
      const parts: Buffer[] = [];
      s.on('data', (d) => parts.push(d)).on('close', () => resolve(Buffer.concat(parts))).on('error', reject);
      s.write(Buffer.from([5, 0, 0, 0, 1, 0, 0, 0])); // a length shorter than the header
    });
    expect(reply.length).toBe(16);
    expect(reply.readBigInt64LE(8)).toBe(-71n); // -EPROTO
    const r = await runBridged(cc('examples/bridge/ioas_map.c'), []);
    expect(r.code).toBe(0);
  });

  /** What the kernel answers test/bridge/arg_edges.c (iommufd_fops_ioctl's copy_struct_from_user, iommufd_ucmd_respond, iommufd_ioas_iova_ranges). */
  const ARG_EDGES = [
    'IOAS_ALLOC ending where the mapping ends: ok, out_ioas_id set',
    'IOAS_ALLOC of size 300, zeros past the struct: ok, out_ioas_id set',
    'IOAS_ALLOC of size 300, byte 299 not zero: E2BIG',
    'IOAS_ALLOC of size 300 running past the mapping: EFAULT',
    'IOAS_ALLOC in a read-only page: EFAULT',
    'IOVA_RANGES with room for none: EMSGSIZE, num_iovas 1',
    'IOVA_RANGES into a read-only page: EFAULT',
    'IOVA_RANGES: ok, num_iovas 1, [0x0, 0xffffffffffffffff]',
    '',
  ].join('\n');

  it('an ioctl argument at the edge of the program\'s memory gets the kernel\'s answer, on both transports (the program sends the bytes it can read, the server reads the rest)', async () => {
    const bin = cc('test/bridge/arg_edges.c');
    expect(await runBridged(bin, [])).toEqual({ code: 0, stdout: ARG_EDGES, stderr: '' });
    const out = join(scratch, 'arg_edges.out');
    expect((await ioasid('serve', '--', 'sh', '-c', `"${bin}" > "${out}"`)).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(ARG_EDGES);
    if (IN_GUEST) expect(execFileSync(bin, { encoding: 'utf8' })).toBe(ARG_EDGES);
  });

  it('a program killed mid-session loses its sim process: every file it held is released', async () => {
    await using server = await BridgeServer.listen();
    const bin = cc('test/bridge/die.c');
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => {
      spawn(bin, [], { env: server.env(preloadLibrary()), stdio: 'ignore' }).on('exit', (_code, sig) => resolve(sig));
    });
    expect(signal).toBe('SIGKILL');
    for (let i = 0; i < 50 && (server.clients || server.openFiles); i++) await new Promise((res) => setTimeout(res, 20));
    expect(server.clients).toBe(0);
    expect(server.openFiles).toBe(0);
  });

  /** test/bridge/sysfs.c on the q35Edu machine's first edu, as the real kernel in the VM answers it for its own. */
  const SYSFS_EXPECTED = `vendor: 0x1234
  lseek to 0: ok, read again: same
device: 0x11e8
  lseek to 0: ok, read again: same
iommu_group link: into /sys/kernel/iommu_groups
driver: vfio-pci
opendir vfio-dev: ok
  entry vfio0 (dir)
  after rewinddir, first entry is a dot: yes
stat vendor: ok, regular 1, mode 444, size 4096
lstat iommu_group: ok, link 1
stat iommu_group: ok, dir 1
stat /dev/vfio/vfio: ok, chr 1, mode 666
open vendor to write: EACCES
open the device's directory to write: EISDIR
open vendor as a directory: ENOTDIR
readlink of vendor: EINVAL
open a missing attribute: ENOENT
access of a missing attribute: ENOENT
access intel-iommu debugfs: ok
fopen domain_translation_struct: ok
opendir debugfs: ok
openat failslab/ignore-gfp-wait: ok
  write "maybe": ok
  failslab and fail_page_alloc listed: 2
open fail-nth: ok
  write 5: ok
  reads 5
  write 0: ok
`;

  it('a VFIO tool finds its device in the machine\'s sysfs and debugfs, with the kernel\'s errnos (natively on the kernel in the VM)', async () => {
    expect(await runOnMachine(cc('test/bridge/sysfs.c'))).toBe(SYSFS_EXPECTED);
  });

  /** test/bridge/fdtable.c on the first edu's group, as the real kernel in the VM answers it. */
  const FDTABLE_EXPECTED = `open group: ok
again while held: EBUSY
F_DUPFD_CLOEXEC: ok, at or above 100: 1, close-on-exec: 1
after closing the first, the dup holds it: EBUSY
FIONCLEX: 0, close-on-exec: 0
FIOCLEX: 0, close-on-exec: 1
FIONBIO: 0, O_NONBLOCK: 1
close_range CLOEXEC: 0, still held: EBUSY
close_range: 0, then: opens
open and dup: ok
closefrom: opens
`;

  it('a sim descriptor through fcntl(F_DUPFD_CLOEXEC), FIOCLEX/FIONCLEX/FIONBIO, close_range and closefrom behaves as the kernel\'s (natively on the kernel in the VM)', async () => {
    expect(await runOnMachine(cc('test/bridge/fdtable.c'))).toBe(FDTABLE_EXPECTED);
  });

  /** test/bridge/exec_keep.c on the first edu's group, as the real kernel in the VM answers it. */
  const EXEC_EXPECTED = `before exec: group EBUSY, IOAS allocated
after exec: the close-on-exec iommufd: closed
the group's descriptor: GET_STATUS 0, viable 1
the group is still held: EBUSY
the IOAS made before exec: IOVA_RANGES 0, 1 range(s)
after closing the group's descriptor: opens
`;

  it('sim descriptors without close-on-exec survive exec with their objects, the others close, as the kernel\'s (natively on the kernel in the VM)', async () => {
    expect(await runOnMachine(cc('test/bridge/exec_keep.c'))).toBe(EXEC_EXPECTED);
  });

  it('a thread opening files while another opens sim descriptors never loses one to the other (the number is reserved before the sim installs)', async () => {
    expect(await runOnMachine(cc('test/bridge/fd_race.c'))).toBe('IOAS allocated on 3000 of 3000 descriptors; another thread\'s descriptor replaced 0 times\n');
  });

  // The sim's side runs on the host in the sim tier: under the VM's TCG every bridged call costs
  // milliseconds, and cases making thousands of calls (access_rw, ioas_iova_alloc) would pass the
  // harness's 30 s timeout. The VM tier reads that run and compares it with the kernel's.
  for (const t of SELFTESTS) {
    it.skipIf(IN_GUEST)(`runs the kernel's ${t.name} selftest binary on the sim through the bridge (the VM tier compares every case with the kernel's run)`, async () => {
      const bin = join(built!, t.path);
      const { result: run, reserved } = await withHugepages(VM_HUGEPAGES, () => runBridged(bin, [], { timeoutMs: 600_000, env: t.env }));
      const tap = parseTap(run.stdout + run.stderr);
      expect(tap.planned).toBe(tap.cases.length);
      expect(tap.cases.filter((c) => c.verdict === 'incomplete' || c.verdict === 'error').map((c) => c.name)).toEqual([]);
      expect(tap.totals).toEqual(tap.counted);
      mkdirSync(RESULTS, { recursive: true });
      writeFileSync(simTap(t), run.stdout + run.stderr);
      const env: SimRunEnv = { tree: treeHash(), hugepages: reserved, capSysResource: hasCapability(CAP_SYS_RESOURCE) };
      writeFileSync(simEnv(t), JSON.stringify(env));
      // Against the kernel's verdicts as recorded (the VM tier checks the record against the live kernel).
      const kernel = kernelVerdicts(t);
      const differ = Object.fromEntries(tap.cases.filter((c) => kernel[c.name] !== c.verdict).map((c) => [c.name, `${kernel[c.name]} on the kernel, ${c.verdict} on the sim: ${c.output.slice(-3).join(' | ')}`]));
      expect(Object.keys(differ).sort(), JSON.stringify(differ, null, 1)).toEqual(Object.keys(expectedDifferences(tap.cases.map((c) => c.name), env)).sort());
      expect(tap.cases.map((c) => c.name).sort()).toEqual(Object.keys(kernel).sort());
    }, 900_000);

    it.skipIf(!IN_GUEST)(`the kernel's ${t.name} selftest binary: the sim through the bridge (sim tier, this tree) gets the real kernel's verdict for every case`, () => {
      const bin = join(built!, t.path);
      const release = claimDevices(t.devices);
      let out: string;
      try {
        out = execFileSync('bash', ['-c', `"${bin}" 2>&1; true`], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...t.env } });
      } finally {
        release();
      }
      const kernel = parseTap(out);
      const verdicts = Object.fromEntries(kernel.cases.map((c) => [c.name, c.verdict]));
      if (WRITE_VERDICTS) {
        writeFileSync(join('/run/results', `kernel-${t.name}.verdicts.json`), JSON.stringify(verdicts, null, 1) + '\n');
        return;
      }
      // the record the sim tier compares with is this kernel's
      expect(verdicts).toEqual(kernelVerdicts(t));
      expect(existsSync(simEnv(t)), `${simEnv(t)}: the sim tier writes it (npm test runs the sim tier first)`).toBe(true);
      const env = JSON.parse(readFileSync(simEnv(t), 'utf8')) as SimRunEnv;
      expect(env.tree, 'the sim tier\'s run is of this tree').toBe(treeHash());
      const sim = parseTap(readFileSync(simTap(t), 'utf8'));
      expect(sim.planned).toBe(kernel.planned);
      const cmp = compareTap(kernel, sim);
      expect(cmp.onlyA).toEqual([]);
      expect(cmp.onlyB).toEqual([]);
      const expected = expectedDifferences(kernel.cases.map((c) => c.name), env);
      const differ = Object.fromEntries(cmp.differ.map((d) => [d.name, `${d.a} on the kernel, ${d.b} on the sim: ${d.bReason ?? ''}`]));
      expect(Object.keys(differ).sort(), JSON.stringify(differ, null, 1)).toEqual(Object.keys(expected).sort());
      expect(cmp.same + cmp.differ.length).toBe(kernel.cases.length);
    }, 600_000);
  }
});
