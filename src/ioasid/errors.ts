/**
 * One error class for every failed uAPI command, like Node's SystemError: it carries the kernel's
 * errno number and its name, so the sim and linux backends can be compared error for error.
 */
import { getSystemErrorMap } from 'node:util';

/**
 * Every Linux errno by name: include/uapi/asm-generic/errno-base.h and errno.h (identical on
 * x86_64 and arm64), then the kernel-internal codes of include/linux/errno.h that can still reach
 * userspace (ENOTSUPP, EPROBE_DEFER...). Node's os.constants.errno cannot stand in for this
 * table: it holds only the ~80 POSIX codes libuv knows (no EBADFD, which vfio answers), and the
 * host's numbers, not Linux's, on other systems. test/errors.test.ts checks the table against
 * both the kernel's headers and os.constants.errno.
 */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9,
  ECHILD: 10, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, ENOTBLK: 15, EBUSY: 16, EEXIST: 17,
  EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25,
  ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30, EMLINK: 31, EPIPE: 32, EDOM: 33,
  ERANGE: 34, EDEADLK: 35, ENAMETOOLONG: 36, ENOLCK: 37, ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40,
  ENOMSG: 42, EIDRM: 43, ECHRNG: 44, EL2NSYNC: 45, EL3HLT: 46, EL3RST: 47, ELNRNG: 48, EUNATCH: 49,
  ENOCSI: 50, EL2HLT: 51, EBADE: 52, EBADR: 53, EXFULL: 54, ENOANO: 55, EBADRQC: 56, EBADSLT: 57,
  EBFONT: 59, ENOSTR: 60, ENODATA: 61, ETIME: 62, ENOSR: 63, ENONET: 64, ENOPKG: 65, EREMOTE: 66,
  ENOLINK: 67, EADV: 68, ESRMNT: 69, ECOMM: 70, EPROTO: 71, EMULTIHOP: 72, EDOTDOT: 73, EBADMSG: 74,
  EOVERFLOW: 75, ENOTUNIQ: 76, EBADFD: 77, EREMCHG: 78, ELIBACC: 79, ELIBBAD: 80, ELIBSCN: 81,
  ELIBMAX: 82, ELIBEXEC: 83, EILSEQ: 84, ERESTART: 85, ESTRPIPE: 86, EUSERS: 87, ENOTSOCK: 88,
  EDESTADDRREQ: 89, EMSGSIZE: 90, EPROTOTYPE: 91, ENOPROTOOPT: 92, EPROTONOSUPPORT: 93,
  ESOCKTNOSUPPORT: 94, EOPNOTSUPP: 95, EPFNOSUPPORT: 96, EAFNOSUPPORT: 97, EADDRINUSE: 98,
  EADDRNOTAVAIL: 99, ENETDOWN: 100, ENETUNREACH: 101, ENETRESET: 102, ECONNABORTED: 103,
  ECONNRESET: 104, ENOBUFS: 105, EISCONN: 106, ENOTCONN: 107, ESHUTDOWN: 108, ETOOMANYREFS: 109,
  ETIMEDOUT: 110, ECONNREFUSED: 111, EHOSTDOWN: 112, EHOSTUNREACH: 113, EALREADY: 114,
  EINPROGRESS: 115, ESTALE: 116, EUCLEAN: 117, ENOTNAM: 118, ENAVAIL: 119, EISNAM: 120, EREMOTEIO: 121,
  EDQUOT: 122, ENOMEDIUM: 123, EMEDIUMTYPE: 124, ECANCELED: 125, ENOKEY: 126, EKEYEXPIRED: 127,
  EKEYREVOKED: 128, EKEYREJECTED: 129, EOWNERDEAD: 130, ENOTRECOVERABLE: 131, ERFKILL: 132,
  EHWPOISON: 133, EFTYPE: 134,
  // aliases: errnoName() gives the first name of each number (EAGAIN, EDEADLK, EOPNOTSUPP)
  EWOULDBLOCK: 11, EDEADLOCK: 35, ENOTSUP: 95,
  // kernel-internal (include/linux/errno.h)
  ERESTARTSYS: 512, ERESTARTNOINTR: 513, ERESTARTNOHAND: 514, ENOIOCTLCMD: 515,
  ERESTART_RESTARTBLOCK: 516, EPROBE_DEFER: 517, EOPENSTALE: 518, ENOPARAM: 519, EBADHANDLE: 521,
  ENOTSYNC: 522, EBADCOOKIE: 523, ENOTSUPP: 524, ETOOSMALL: 525, ESERVERFAULT: 526, EBADTYPE: 527,
  EJUKEBOX: 528, EIOCBQUEUED: 529, ERECALLCONFLICT: 530, ENOGRACE: 531,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

const NAMES = new Map<number, ErrnoCode>();
for (const [name, n] of Object.entries(ERRNO) as [ErrnoCode, number][]) if (!NAMES.has(n)) NAMES.set(n, name);

/** The errno's name ('EINVAL'); `E<n>` for a number Linux does not define. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
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
