/**
 * Backend selection: `'sim'` (the embedded default: a simulated kernel and machine, nothing to
 * install) or `'linux'` (the real uAPI through koffi). One argument switches user code and tests.
 */
import { LinuxBinding } from './linux/binding.js';
import { sim, type SimOptions } from './sim/index.js';
import type { BackendName, Binding } from './types.js';

export type { BackendName, Binding } from './types.js';
export { sim, SimBinding, SimKernel, type SimOptions } from './sim/index.js';

/** Every backend name, in the order error messages list them. */
export const BACKENDS: readonly BackendName[] = ['sim', 'linux'];

/**
 * `name` as a backend name; an Error listing the valid names for anything else (a typo must not
 * quietly run another backend). `source` says where the name came from, for the message.
 */
export function backendName(name: string, source = 'backend'): BackendName {
  if ((BACKENDS as readonly string[]).includes(name)) return name as BackendName;
  throw new RangeError(`${source} ${JSON.stringify(name)} is not a backend: valid names are ${BACKENDS.join(', ')}`);
}

/** The backend named by IOASID_BACKEND (unset or empty: the sim); an Error for an unknown name. */
export function defaultBackendName(): BackendName {
  const env = process.env.IOASID_BACKEND;
  return env ? backendName(env, 'IOASID_BACKEND') : 'sim';
}

export function openBinding(backend: BackendName | Binding = defaultBackendName(), simOptions?: SimOptions): Binding {
  if (typeof backend !== 'string') return backend;
  return backendName(backend) === 'linux' ? new LinuxBinding() : sim(simOptions);
}
