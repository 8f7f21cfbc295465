/**
 * Errors inside the simulated kernel: deep code throws a bare errno (like returning -EINVAL up
 * the call chain); the dispatcher turns it into an IommuError named after the ioctl.
 */
export class KernelErrno {
  constructor(readonly errno: number) {}
}

export function kerr(errno: number): never {
  throw new KernelErrno(errno);
}
