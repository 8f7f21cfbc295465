/**
 * The preload bridge (docs/bridge.md): unmodified C programs against a sim machine. The kernel's
 * own iommufd selftest binary, built from linux-source-7.3 (scripts/selftests/build.sh), runs
 * against the sim through the bridge and, in the VM, natively on the real 7.3 kernel in the same
 * run; every case must get the kernel's verdict except the ones listed below with their reasons.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BridgeServer, compareTap, parseTap, preloadLibrary, runBridged } from '../src/bridge/index.js';
import { cc as cc_, selftests } from './bridge_build.js';
import { root } from './doc_examples.js';

const IN_GUEST = process.env.IOASID_IN_GUEST === '1';

const built = selftests();
const cc = (src: string): string => cc_(built!, src);

/**
 * Cases whose verdict on the sim differs from the kernel's, each with its reason. The test fails
 * when one more differs, and when one of these stops differing (then it leaves this list).
 */
const KNOWN: Record<string, string> = {};

describe.skipIf(!built)('bridge: unmodified programs against the sim', () => {
  it('the C example of docs/bridge.md prints what the page shows, on the sim (and in the VM, natively on the kernel too)', async () => {
    const bin = cc('examples/bridge/ioas_map.c');
    const r = await runBridged(bin, []);
    const doc = readFileSync(join(root, 'docs/bridge.md'), 'utf8');
    const shown = /<!-- bridge-output: examples\/bridge\/ioas_map.c -->\n```console\n\$ [^\n]*\n([\s\S]*?)```/.exec(doc);
    expect(shown, 'docs/bridge.md shows the example run').not.toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toBe(shown![1]);
    if (IN_GUEST) expect(execFileSync(bin, { encoding: 'utf8' })).toBe(shown![1]);
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

  it.skipIf(!IN_GUEST)('the kernel\'s iommufd selftest binary: the sim through the bridge gets the real kernel\'s verdict for every case', async () => {
    const bin = join(built!, 'iommufd');
    const kernel = parseTap(execFileSync('bash', ['-c', `"${bin}" 2>&1; true`], { encoding: 'utf8', maxBuffer: 1 << 26 }));
    const sim = await runBridged(bin, [], { timeoutMs: 900_000 });
    const simRun = parseTap(sim.stdout + sim.stderr);
    expect(kernel.planned).toBe(simRun.planned);
    const cmp = compareTap(kernel, simRun);
    expect(cmp.onlyA).toEqual([]);
    expect(cmp.onlyB).toEqual([]);
    const differ = Object.fromEntries(cmp.differ.map((d) => [d.name, `${d.a} on the kernel, ${d.b} on the sim`]));
    expect(Object.keys(differ).sort()).toEqual(Object.keys(KNOWN).sort());
    expect(cmp.same + cmp.differ.length).toBe(kernel.cases.length);
  }, 1_200_000);
});
