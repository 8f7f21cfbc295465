#!/usr/bin/env node
/** The `ioasid` command: `ioasid demo [--backend sim|linux]` (see demo.ts). */
import type { BackendName } from './backends/types.js';
import { demo } from './demo.js';

const args = process.argv.slice(2);
const cmd = args[0] ?? 'demo';
const bi = args.indexOf('--backend');
const backend = (bi >= 0 ? args[bi + 1] : process.env.IOASID_BACKEND ?? 'sim') as BackendName;
if (cmd === 'demo') demo(backend);
else {
  console.error('usage: ioasid demo [--backend sim|linux]');
  process.exit(2);
}
