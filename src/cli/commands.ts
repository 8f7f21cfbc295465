/**
 * The code of `ioasid demo`, `doctor`, `ls`, `bind`, `unbind`, `compare` and `map`, each part
 * loaded on first use. The package's bin runs main.ts and this module from the package's one
 * bundle (scripts/bundle.mjs; cold.cts loads it with a code cache) when there is one, else as
 * these ES modules.
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
