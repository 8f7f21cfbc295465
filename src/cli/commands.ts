/**
 * The code of `ioasid demo`, `doctor`, `ls`, `bind`, `unbind`, `compare` and `map`, each part
 * loaded on first use. The command loads it through cold.ts: from the cold-start bundle (this
 * module and all it imports as one script, built by scripts/cli-bundle.mjs) when there is one,
 * else as these ES modules. It takes the ES modules alone where it runs code that imports the
 * package's own classes: the user's module (`compare SCENARIO`, `map --scenario`), and the bridge
 * (`serve`, `trace`, which are not in the bundle); a class from the bundle is another class.
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
