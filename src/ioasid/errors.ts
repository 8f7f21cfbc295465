/**
 * One error class for every failed uAPI command, like Node's SystemError: it carries the kernel's
 * errno number and its name, so the sim and linux backends can be compared error for error.
 */
import { getSystemErrorMap } from 'node:util';

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

/** What an IommuError says beyond errno and syscall: the file a path call named, and why. */
export interface IommuErrorInfo {
  /** The file a path call (open, read of a sysfs file...) was given, e.g. '/dev/iommu'. */
  path?: string;
  /** The cause or hint, appended to the message ('the kernel lacks CONFIG_IOMMUFD'). */
  detail?: string;
}

/**
 * Texts Node's table lacks or words for another system: libuv names 95 ENOTSUP "operation not
 * supported on socket", knows no EBADFD (what vfio answers for a non-iommufd fd) nor EDEADLK,
 * and spells EIO "i/o error". These are glibc's strerror texts.
 */
const STRERROR_LINUX: Record<number, string> = {
  5: 'Input/output error', 35: 'Resource deadlock avoided', 77: 'File descriptor in bad state',
  95: 'Operation not supported',
};

let systemErrors: Map<string, string> | undefined;

/**
 * strerror(errno): Node's text for the errno (libuv's table, looked up by name so the host's own
 * numbering never matters), capitalised like libc's.
 */
export function strerror(errno: number): string {
  const own = STRERROR_LINUX[errno];
  if (own) return own;
  systemErrors ??= new Map([...getSystemErrorMap().values()]);
  const text = systemErrors.get(errnoName(errno));
  return text ? text[0]!.toUpperCase() + text.slice(1) : `Unknown error ${errno}`;
}

/**
 * A failed uAPI command or syscall, like Node's SystemError: `errno`, `code`, `syscall`, `path`
 * for path calls, and a message such as "open /dev/iommu: ENOENT (No such file or directory)" or
 * "IOMMU_IOAS_MAP: EEXIST (File already exists)", followed by the cause when one is known.
 */
export class IommuError extends Error {
  /** Positive errno number, as the kernel reports it (e.g. 22). */
  readonly errno: number;
  /** Errno name, e.g. 'EINVAL'. */
  readonly code: string;
  /** The uAPI command or syscall that failed, e.g. 'IOMMU_IOAS_MAP'. */
  readonly syscall: string;
  /** The file a path call named (open, sysfs reads), else undefined. */
  readonly path?: string;

  /** `info` is the cause as a string, or the path and cause. */
  constructor(errno: number, syscall: string, info: string | IommuErrorInfo = {}) {
    const { path, detail } = typeof info === 'string' ? { path: undefined, detail: info } : info;
    const code = errnoName(errno);
    super(`${syscall}${path ? ` ${path}` : ''}: ${code} (${strerror(errno)})${detail ? `: ${detail}` : ''}`);
    this.name = 'IommuError';
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
    if (path !== undefined) this.path = path;
  }
}

/** Throw helper for backends: `fail(ERRNO.EINVAL, 'IOMMU_IOAS_MAP')`. */
export function fail(errno: number, syscall: string, info?: string | IommuErrorInfo): never {
  throw new IommuError(errno, syscall, info);
}

/** True when `e` is an IommuError with the given errno name. */
export function isErrno(e: unknown, code: ErrnoCode): e is IommuError {
  return e instanceof IommuError && e.errno === ERRNO[code];
}
