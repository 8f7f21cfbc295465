#!/usr/bin/env node
/**
 * The `ioasid` command, package.json's bin (`ioasid --help`): main.ts run from the package's one
 * bundle with a V8 code cache, else as ES modules (cli/cold.cts). CommonJS, so that Node starts it
 * without its ES module loader; `node dist/src/cli.js` runs the same command from the ES modules.
 */
import { run } from './cli/cold.cjs';

void run(process.argv.slice(2)).then((status) => {
  process.exitCode = status;
});
