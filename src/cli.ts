#!/usr/bin/env node
/** The `ioasid` command (`ioasid --help`): its code is cli/main.ts. */
import { main } from './cli/main.js';

process.exitCode = await main(process.argv.slice(2));
