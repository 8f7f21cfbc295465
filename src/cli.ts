#!/usr/bin/env node
/**
 * The `ioasid` command from the ES modules (`node dist/src/cli.js`); the package's bin is cli.cts,
 * which runs the same main.ts from the package's bundle. Its code is cli/main.ts.
 */
import { main } from './cli/main.js';

process.exitCode = await main(process.argv.slice(2));
