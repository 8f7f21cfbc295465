/**
 * The code of `ioasid demo`, `doctor`, `ls`, `bind`, `unbind`, `compare` and `map`, each part
 * loaded on first use. The package's bin runs main.ts and this module from the cold-start bundle
 * (main.ts and all it imports as one script, built by scripts/cli-bundle.mjs; cold.cts loads it)
 * when there is one, else as these ES modules. Where a command runs code that imports the
 * package's own classes, the bundle's main hands it to the ES modules' (main.ts's Runtime): the
 * user's module (`compare SCENARIO`, `map --scenario`), and the bridge (`serve`, `trace`, which
 * are not in the bundle); a class from the bundle is another class.
 */
export const modules = {
  backends: () => import('../backends/index.js'),
  bind: () => import('./bind.js'),
  checks: () => import('../doctor/checks.js'),
  compare: () => import('./compare.js'),
  demo: () => import('../demo.js'),
  doctor: () => import('./doctor.js'),
  linux: () => import('../backends/linux/binding.js'),
  ls: () => import('./ls.js'),
  map: () => import('./map.js'),
  presets: () => import('../backends/sim/machine/presets.js'),
  sim: () => import('../backends/sim/index.js'),
};

export type Modules = typeof modules;
