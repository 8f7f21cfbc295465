/**
 * One error class for every failed uAPI command, like Node's SystemError: it carries the kernel's
 * errno number and its name, so the sim and linux backends can be compared error for error.
 */

/** Linux errno numbers (asm-generic/errno-base.h + errno.h; identical on x86_64 and arm64). */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11,
  ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19, ENOTDIR: 20, EISDIR: 21,
  EINVAL: 22, ENOTTY: 25,
  ENOSPC: 28, ESPIPE: 29, ERANGE: 34, EDEADLK: 35, ENOSYS: 38, ELOOP: 40, EBADFD: 77, EOVERFLOW: 75,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95, EADDRINUSE: 98,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

const NAMES: Record<number, ErrnoCode> = Object.fromEntries(
  Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoCode]),
);

export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

export class IommuError extends Error {
  /** Positive errno number, as the kernel reports it (e.g. 22). */
  readonly errno: number;
  /** Errno name, e.g. 'EINVAL'. */
  readonly code: string;
  /** The uAPI command or syscall that failed, e.g. 'IOMMU_IOAS_MAP'. */
  readonly syscall: string;

  constructor(errno: number, syscall: string, detail?: string) {
    const code = errnoName(errno);
    super(`${syscall} failed: ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'IommuError';
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

/** Throw helper for backends: `fail(ERRNO.EINVAL, 'IOMMU_IOAS_MAP')`. */
export function fail(errno: number, syscall: string, detail?: string): never {
  throw new IommuError(errno, syscall, detail);
}

/** True when `e` is an IommuError with the given errno name. */
export function isErrno(e: unknown, code: ErrnoCode): e is IommuError {
  return e instanceof IommuError && e.errno === ERRNO[code];
}
