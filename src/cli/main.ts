/**
 * The `ioasid` command, parsed with node:util's parseArgs: `demo` (the default), `doctor`, `ls`,
 * `compare`, `bind`, `unbind` and `map`, each with --help; --version; --json where a command prints data;
 * --machine PRESET to run against a sim machine instead of this host. Exit status: 0 ok, 1
 * findings that block use, modes that diverge, a refusal or a failure, 2 a usage error. Commands
 * load their code when they run, so --help and --version start fast. The package's
 * bin (cli.cts) runs this module from the package's bundle with a V8 code cache (cold.cts);
 * dist/src/cli.js and the tests run it as an ES module.
 */
import { readFileSync, writeSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { BackendName, Binding } from '../backends/types.js';
import type { ImportModule } from './compare.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/**
 * stdout and stderr, a line at a time with writeSync: console.log's first line makes Node set up
 * a stream for the descriptor (5-10 ms at start), which a command that prints and exits does not
 * need. A descriptor in non-blocking mode (EAGAIN) gets the rest through the stream; once the
 * reader is gone (EPIPE) the output is dropped, as a closed pipe drops it.
 */
const consoleIo: Io = { out: lineWriter(1), err: lineWriter(2) };

function lineWriter(fd: 1 | 2): (line: string) => void {
  let stream: NodeJS.WriteStream | undefined;
  let closed = false;
  return (line) => {
    const bytes = Buffer.from(`${line}\n`);
    let at = 0;
    try {
      while (!stream && !closed && at < bytes.length) at += writeSync(fd, bytes, at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') closed = true;
      else if (code === 'EAGAIN') stream = fd === 1 ? process.stdout : process.stderr;
      else throw e;
    }
    if (stream && at < bytes.length) stream.write(bytes.subarray(at));
  };
}

/**
 * What the bin (cold.cts) gives main when it runs main from the package's bundle: import() of the
 * user's scenario module, which a script compiled by node:vm cannot do itself.
 */
export interface Runtime {
  importModule?: ImportModule;
}

/** A usage error: printed with a pointer to --help, exit status 2. */
class UsageError extends Error {}

const MACHINE_HELP = '  --machine PRESET  run against a sim machine preset instead of this host';

const HELP: Record<string, string[]> = {
  '': [
    'usage: ioasid [command] [options]',
    '',
    'The Linux iommufd model for Node.js. Commands:',
    '  demo     tour an IOAS, then a device doing DMA through the IOMMU (the default command)',
    '  doctor   can this host use iommufd and VFIO, and what to do if not',
    '  ls       PCI functions, their IOMMU groups, drivers and VFIO device nodes',
    '  compare  run a scenario in several IOMMU modes and report where their answers diverge',
    '  bind     hand a PCI function to a VFIO driver (driver_override), safely',
    '  unbind   put back the driver `ioasid bind` took a function from',
    '  map      build an IOAS (devices attached, a scenario mapping memory) and draw its layout',
    '',
    'Options:',
    '  -h, --help     this text (`ioasid COMMAND --help` for a command\'s)',
    '  -V, --version  the package version',
    '',
    'Exit status: 0 ok, 1 findings that block use, modes that diverge, or a failure, 2 a usage error.',
  ],
  demo: [
    'usage: ioasid demo [--backend sim|linux] [--machine PRESET]',
    '',
    'Allocate an IOAS, map memory at fixed and kernel-chosen IOVAs, show a refused request; then',
    "bind QEMU's edu through its VFIO cdev and copy bytes by DMA through the IOMMU.",
    '',
    '  --backend NAME    sim or linux (default: IOASID_BACKEND, else sim)',
    '  --machine PRESET  the sim machine to run on (implies --backend sim; default q35Edu)',
  ],
  doctor: [
    'usage: ioasid doctor [--json] [--machine PRESET] [--memlock SIZE]',
    '',
    'Check whether this host can use iommufd and VFIO: the kernel config, the IOMMU (ACPI tables,',
    '/sys/class/iommu, groups, command line), /dev/iommu and /dev/vfio nodes and their permissions,',
    'vfio-pci, and RLIMIT_MEMLOCK. Each finding says what is the matter and what to do.',
    'Exit status 1 when a finding blocks use.',
    '',
    '  --json            the findings and verdicts as JSON',
    MACHINE_HELP,
    '  --memlock SIZE    what your mappings pin, to judge RLIMIT_MEMLOCK by (default 1G)',
  ],
  ls: [
    'usage: ioasid ls [--json] [--machine PRESET]',
    '',
    'List the PCI functions (BDF, vendor:device, class, IOMMU group, bound driver, VFIO cdev, and',
    'the VFIO driver each would take) and the IOMMU groups with their viability (whether a user',
    'can own the group: no device bound to a driver that uses the kernel\'s DMA API).',
    '',
    '  --json            the same data as JSON',
    MACHINE_HELP,
  ],
  compare: [
    'usage: ioasid compare SCENARIO|--trace FILE.jsonl [--modes a,b] [--backend sim|linux] [--machine PRESET] [--json] [--html FILE]',
    '',
    'Run SCENARIO (a JavaScript module whose default export takes an IommuSession) once in each',
    'IOMMU mode and report every step where the modes answer differently: result, errno, returned',
    'values or the IOVA layout after it. Exit status 0 when all modes agree, 1 when they diverge.',
    '',
    '  --trace FILE      replay a recorded trace (docs/trace.md) as the scenario instead of a module',
    '  --modes LIST      comma-separated modes, default all six: vfio_type1_iommu, vfio_type1v2_iommu,',
    '                    iommufd_compat_type1, iommufd_compat_type1v2, iommufd, ioasid_compat',
    '  --backend NAME    sim (default: a fresh sim machine per mode) or linux (this host\'s kernel)',
    '  --machine PRESET  the sim machine preset (default q35Edu)',
    '  --json            the report as JSON',
    '  --html FILE       also write the report as a self-contained HTML page',
  ],
  bind: [
    'usage: ioasid bind BDF [--driver NAME] [--force] [--json] [--machine PRESET]',
    '',
    'Hand the PCI function BDF (0000:00:05.0, or 00:05.0) to a VFIO driver the way an admin does:',
    'driver_override, unbind the driver it has, bind the new one. Refused, with nothing changed,',
    'when the driver is not there or the host uses the function or a device of its IOMMU group (a',
    'mounted disk, swap, an interface that is up, the console, the boot VGA device, a process with',
    'its VFIO device open); a failed bind puts the old driver back. What it had is recorded, for',
    '`ioasid unbind`, in /run/ioasid/bindings.json (not root: $XDG_RUNTIME_DIR/ioasid, else the',
    'temporary directory). Exit status 1 when refused or failed.',
    '',
    '  --driver NAME     the driver (default: the VFIO driver modules.alias names for it, else vfio-pci)',
    '  --force           take the function even though the host uses it',
    '  --json            what changed, as JSON',
    MACHINE_HELP,
  ],
  unbind: [
    'usage: ioasid unbind BDF [--to DRIVER|none] [--force] [--json] [--machine PRESET]',
    '',
    'Put back exactly the binding (driver and driver_override) the function had before',
    '`ioasid bind`, and forget the record. Refused when ioasid did not bind it, or something else',
    'changed it since: then --to says what it should have. Exit status 1 when refused or failed.',
    '',
    '  --to DRIVER       bind this driver instead, with no driver_override (a VFIO driver: set to it,',
    '                    as VFIO drivers bind only through it); none: leave the function without one',
    '  --force           even though the host uses the function (a process with its VFIO device open)',
    '  --json            what changed, as JSON',
    MACHINE_HELP,
  ],
  map: [
    'usage: ioasid map [--device BDF]... [--scenario FILE] [--machine PRESET] [--json] [--svg FILE] [--html FILE]',
    '',
    'An IOAS lives in the process that made it, so this command makes one: it opens /dev/iommu,',
    'allocates an IOAS, binds and attaches each --device through its VFIO cdev (a function already',
    'on a VFIO driver: nothing is taken from the host), runs the scenario, then prints the layout:',
    'allowed and reserved IOVA ranges, the devices\' reserved regions, the areas mapped, the HWPT',
    'each device attached to and its aperture. Exit status 1 when a device is refused or it failed.',
    '',
    '  --device BDF      a PCI function on a VFIO driver to attach (repeatable)',
    '  --scenario FILE   a module whose default export (ctx, ioas, devices) maps memory into the IOAS',
    '  --json            the layout as JSON',
    '  --svg FILE        also draw it as a standalone SVG',
    '  --html FILE       also write a self-contained page: the drawing and tables',
    MACHINE_HELP,
  ],
};

HELP.serve = [
  'usage: ioasid serve [--machine PRESET] [-- COMMAND [ARGS...]]',
  '',
  'Serve a sim machine to unmodified programs: their calls on /dev/iommu and /dev/vfio/* go to',
  'the sim through a preload library (built with cc on first use, cached). With a COMMAND, run',
  'it against the machine and exit with its status; without, print the environment a program',
  'needs (IOASID_BRIDGE_SOCKET, LD_PRELOAD) and serve until interrupted. See docs/bridge.md.',
  '',
  '  --machine PRESET  the sim machine preset (default q35Edu)',
];

HELP.trace = [
  'usage: ioasid trace [-o FILE] [--sim [--machine PRESET]] -- COMMAND [ARGS...]',
  '',
  'Run COMMAND with the preload library recording every call it makes on /dev/iommu and',
  '/dev/vfio/* descriptors (open, close, ioctl with its struct bytes before and after, read,',
  'write, pread, pwrite, mmap) as a trace (docs/trace.md), and exit with its status. The calls',
  'go to this host\'s kernel, or with --sim to a sim machine through the bridge. COMMAND\'s own',
  'process is written to FILE, each forked child to FILE.PID. `ioasid compare --trace FILE`',
  'replays a trace in every IOMMU mode.',
  '',
  '  -o, --output FILE  where the trace goes (default trace.jsonl)',
  '  --sim              run against a sim machine instead of this host\'s kernel',
  '  --machine PRESET   the sim machine preset (implies --sim; default q35Edu)',
];

const COMMON = { help: { type: 'boolean', short: 'h' } } as const;
const MACHINE = { machine: { type: 'string' } } as const;
const JSON_OPT = { json: { type: 'boolean' } } as const;
const OPTIONS = {
  demo: { ...COMMON, ...MACHINE, backend: { type: 'string' } },
  doctor: { ...COMMON, ...MACHINE, ...JSON_OPT, memlock: { type: 'string' } },
  ls: { ...COMMON, ...MACHINE, ...JSON_OPT },
  compare: {
    ...COMMON, ...MACHINE, ...JSON_OPT, backend: { type: 'string' }, modes: { type: 'string' }, html: { type: 'string' }, trace: { type: 'string' },
  },
  bind: { ...COMMON, ...MACHINE, ...JSON_OPT, driver: { type: 'string' }, force: { type: 'boolean' } },
  unbind: { ...COMMON, ...MACHINE, ...JSON_OPT, to: { type: 'string' }, force: { type: 'boolean' } },
  serve: { ...COMMON, ...MACHINE },
  trace: { ...COMMON, ...MACHINE, output: { type: 'string', short: 'o' }, sim: { type: 'boolean' } },
  map: { ...COMMON, ...MACHINE, ...JSON_OPT, device: { type: 'string', multiple: true }, scenario: { type: 'string' }, svg: { type: 'string' }, html: { type: 'string' } },
} as const satisfies Record<string, ParseArgsConfig['options']>;

type Command = keyof typeof OPTIONS;

/** The commands that take operands (a scenario module, a PCI address). */
const WITH_POSITIONALS: ReadonlySet<string> = new Set(['compare', 'bind', 'unbind', 'serve', 'trace']);

/**
 * The package's version, from the nearest package.json above this module: the package's own (read
 * directly: resolving 'ioasid/package.json' through the package's exports costs ~10 ms at start).
 */
export function version(): string {
  for (let dir = new URL('./', import.meta.url); ; dir = new URL('../', dir)) {
    try {
      return (JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { version: string }).version;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || dir.pathname === '/') throw e;
    }
  }
}

/** Run the command line `argv` (without node and the script); resolves to the exit status. */
export async function main(argv: readonly string[], io: Io = consoleIo, env: NodeJS.ProcessEnv = process.env, runtime: Runtime = {}): Promise<number> {
  const first = argv[0];
  if (first === '-V' || first === '--version') {
    io.out(version());
    return 0;
  }
  if (first === '-h' || first === '--help' || first === 'help') {
    const topic = first === 'help' ? argv[1] ?? '' : '';
    if (!(topic in HELP)) return usage(io, '', new UsageError(`no command ${JSON.stringify(topic)}`));
    for (const l of HELP[topic]!) io.out(l);
    return 0;
  }
  const named = first !== undefined && !first.startsWith('-');
  const cmd = named ? first : 'demo';
  if (!(cmd in OPTIONS)) return usage(io, '', new UsageError(`unknown command ${JSON.stringify(cmd)}: the commands are ${Object.keys(OPTIONS).join(', ')}`));
  const command = cmd as Command;
  try {
    const { values, positionals } = parseArgs({
      args: argv.slice(named ? 1 : 0), options: OPTIONS[command], strict: true, allowPositionals: WITH_POSITIONALS.has(command),
    });
    if (values.help) {
      for (const l of HELP[command]!) io.out(l);
      return 0;
    }
    if (command === 'compare') return await compare(positionals, values as Values, io, runtime);
    if (command === 'serve') {
      const machine = values.machine === undefined ? undefined : await machineDesc(values.machine as string);
      return await (await import('./serve.js')).serveCommand(positionals, machine, io, env);
    }
    if (command === 'trace') {
      if (!positionals.length) throw new UsageError('give the COMMAND to trace, after --');
      const v = values as { machine?: string; output?: string; sim?: boolean };
      const machine = v.machine === undefined ? undefined : await machineDesc(v.machine);
      const sim = v.sim || machine ? { machine } : undefined;
      return await (await import('./trace.js')).traceCommand(positionals, { output: v.output ?? 'trace.jsonl', sim }, io, env);
    }
    return await run(command, { ...values, positionals } as Values, io, env, runtime);
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) return usage(io, command, e as Error);
    io.err(`ioasid ${command}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

function usage(io: Io, command: string, e: Error): number {
  io.err(`ioasid${command ? ` ${command}` : ''}: ${e.message}`);
  io.err(`see \`ioasid ${command ? `${command} ` : ''}--help\``);
  return 2;
}

interface Values {
  machine?: string;
  backend?: string;
  json?: boolean;
  memlock?: string;
  modes?: string;
  html?: string;
  trace?: string;
  driver?: string;
  to?: string;
  force?: boolean;
  device?: string[];
  scenario?: string;
  svg?: string;
  positionals: string[];
}

/** `ioasid compare SCENARIO`: the sim unless --backend linux; exit 1 when the modes diverge. */
async function compare(positionals: readonly string[], v: Values, io: Io, runtime: Runtime): Promise<number> {
  if (v.trace !== undefined && positionals.length) throw new UsageError('give a SCENARIO module or --trace FILE, not both');
  if (v.trace === undefined && positionals.length !== 1) throw new UsageError(`give one SCENARIO module (got ${positionals.length})`);
  const { backendName } = await import('../backends/index.js');
  const { compareCommand, loadScenario, loadTraceScenario, parseModes } = await import('./compare.js');
  const backend = usageCheck(() => backendName(v.backend ?? 'sim', '--backend'));
  if (v.machine !== undefined && backend !== 'sim') throw new UsageError('--machine runs the sim: it cannot go with --backend linux');
  if (v.machine !== undefined) await machineDesc(v.machine);
  usageCheck(() => parseModes(v.modes));
  let scenario;
  try {
    scenario = v.trace !== undefined ? loadTraceScenario(v.trace) : await loadScenario(positionals[0]!, process.cwd(), undefined, runtime.importModule);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  return compareCommand({ ...v, scenario: v.trace !== undefined ? `--trace ${v.trace}` : positionals[0]!, backend }, scenario, io.out);
}

async function run(command: Command, v: Values, io: Io, env: NodeJS.ProcessEnv, runtime: Runtime): Promise<number> {
  const print = (data: unknown, lines: () => string[]): void => {
    if (v.json) io.out(JSON.stringify(data, null, 2));
    else for (const l of lines()) io.out(l);
  };
  if (command === 'demo') {
    const { demo } = await import('../demo.js');
    const { backendName } = await import('../backends/index.js');
    const machine = v.machine === undefined ? undefined : await machineDesc(v.machine);
    const backend: BackendName = v.backend !== undefined ? usageCheck(() => backendName(v.backend!, '--backend'))
      : machine ? 'sim' : usageCheck(() => backendName(env.IOASID_BACKEND || 'sim', 'IOASID_BACKEND'));
    if (machine && backend !== 'sim') throw new UsageError('--machine runs the sim: it cannot go with --backend linux');
    demo(backend, io.out, machine ? { machine } : undefined);
    return 0;
  }
  const binding = await bindingFor(v.machine);
  if (command === 'map') return (await import('./map.js')).mapCommand(binding, { ...v, ...(runtime.importModule ? { importModule: runtime.importModule } : {}) }, io);
  if (command === 'bind' || command === 'unbind') {
    const host = v.machine === undefined ? 'this host' : `sim machine ${v.machine}`;
    const { bindCommand, pciAddress, recordsFor } = await import('./bind.js');
    if (v.positionals.length !== 1) throw new UsageError(`give one PCI address (BDF, e.g. 0000:00:05.0), not ${v.positionals.length}`);
    const bdf = pciAddress(v.positionals[0]!);
    if (bdf === null) throw new UsageError(`${JSON.stringify(v.positionals[0])} is not a PCI address: domain:bus:device.function, e.g. 0000:00:05.0`);
    const driver = command === 'bind' ? v.driver : v.to;
    if (driver !== undefined && !/^[\w.:+-]+$/.test(driver)) throw new UsageError(`${JSON.stringify(driver)} is not a driver name`);
    return bindCommand(command, binding, recordsFor(binding, env), { host, bdf, driver, force: v.force, json: v.json }, io);
  }
  if (command === 'doctor') {
    const { diagnose } = await import('../doctor/checks.js');
    const { formatDiagnosis } = await import('./doctor.js');
    const need = v.memlock === undefined ? undefined : usageCheck(() => parseSize(v.memlock!));
    const d = diagnose(binding, need === undefined ? {} : { memlockNeed: need });
    print(d, () => formatDiagnosis(d));
    return d.findings.some((f) => f.level === 'fail') ? 1 : 0;
  }
  const { listing, formatListing } = await import('./ls.js');
  const l = listing(binding, v.machine === undefined ? 'this host' : `sim machine ${v.machine}`);
  print(l, () => formatListing(l));
  return 0;
}

/** `f()`, with its error as a usage error (a bad option value). */
function usageCheck<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** A preset's description by name; a usage error listing the names otherwise. */
async function machineDesc(name: string): Promise<import('../backends/sim/machine/machine.js').MachineDesc> {
  const { machinePreset } = await import('../backends/sim/machine/presets.js');
  return usageCheck(() => machinePreset(name, '--machine'))();
}

/** The sim machine named, else this host (read through the linux backend's file calls, no koffi). */
async function bindingFor(machine: string | undefined): Promise<Binding> {
  if (machine !== undefined) {
    const desc = await machineDesc(machine);
    const { sim } = await import('../backends/sim/index.js');
    return sim({ machine: desc });
  }
  const { LinuxBinding } = await import('../backends/linux/binding.js');
  return new LinuxBinding();
}

/** "1G", "512M", "64k", "1GiB" or bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new RangeError(`--memlock ${JSON.stringify(text)} is not a size (e.g. 1G, 512M, 65536)`);
  return Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
}
