/**
 * Backend selection: `'sim'` (the embedded default: a simulated kernel and machine, nothing to
 * install) or `'linux'` (the real uAPI through koffi). One argument switches user code and tests.
 */
import { LinuxBinding } from './linux/binding.js';
import { sim, type SimOptions } from './sim/index.js';
import type { BackendName, Binding } from './types.js';

export type { BackendName, Binding } from './types.js';
export { sim, SimBinding, SimKernel, type SimOptions } from './sim/index.js';

/** The backend named by IOASID_BACKEND, else the sim. */
export function defaultBackendName(): BackendName {
  const env = process.env.IOASID_BACKEND;
  return env === 'linux' ? 'linux' : 'sim';
}

export function openBinding(backend: BackendName | Binding = defaultBackendName(), simOptions?: SimOptions): Binding {
  if (typeof backend !== 'string') return backend;
  return backend === 'linux' ? new LinuxBinding() : sim(simOptions);
}
