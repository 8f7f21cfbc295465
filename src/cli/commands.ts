/**
 * The code of `ioasid demo`, `doctor`, `ls`, `bind` and `unbind`, each part loaded on first use.
 * The command loads it through cold.ts: from the cold-start bundle (this module and all it
 * imports as one script, built by scripts/cli-bundle.mjs) when there is one, else as these ES
 * modules. `compare`, `map`, `serve` and `trace` take it from the ES modules only: they run the
 * user's modules or the bridge, which import the package's own classes.
 */
export const modules = {
  backends: () => import('../backends/index.js'),
  bind: () => import('./bind.js'),
  checks: () => import('../doctor/checks.js'),
  demo: () => import('../demo.js'),
  doctor: () => import('./doctor.js'),
  linux: () => import('../backends/linux/binding.js'),
  ls: () => import('./ls.js'),
  presets: () => import('../backends/sim/machine/presets.js'),
  sim: () => import('../backends/sim/index.js'),
};

export type Modules = typeof modules;
