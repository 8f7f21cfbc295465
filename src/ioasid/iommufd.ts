/**
 * The iommufd context: one open /dev/iommu. It owns the object ids of everything made through it
 * (IOAS now; HWPTs, devices, ... later); closing it destroys them all, as the kernel does.
 */
import { openBinding } from '../backends/index.js';
import { O_CLOEXEC, O_RDWR, type BackendName, type Binding } from '../backends/types.js';
import type { SimOptions } from '../backends/sim/index.js';
import { Command } from './codec.js';
import { FaultQueue } from './fault.js';
import { Hwpt, type HwptAllocOptions } from './hwpt.js';
import { Ioas } from './ioas.js';
import { MemFd, UserMemory, type MmapOptions } from './memory.js';
import { VeventQueue, type VeventQueueOptions } from './veventq.js';
import {
  IOCTLS, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, IOMMU_OPTION_RLIMIT_MODE, IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, type IoctlDesc,
} from './uapi.js';
import { isErrno } from './errors.js';
import { explainIommufdOpen } from '../doctor/checks.js';

export interface OpenOptions {
  /** 'sim' (default unless IOASID_BACKEND=linux), 'linux', or a Binding instance. */
  backend?: BackendName | Binding;
  /** Device node (default /dev/iommu). */
  path?: string;
  /** Options for a fresh sim machine when backend is 'sim'. */
  sim?: SimOptions;
}

/** What IOMMU_GET_HW_INFO reports. */
export interface HwInfo {
  /** IOMMU_HW_INFO_TYPE_*: 1 INTEL_VTD, 2 ARM_SMMUV3, 0xfeedbeef the kernel's selftest mock. */
  type: number;
  /** The payload length the kernel has (may exceed what was copied). */
  dataLen: number;
  data: Uint8Array;
  /** IOMMU_HW_CAP_*: bit 0 DIRTY_TRACKING, 1 PASID_EXEC, 2 PASID_PRIV, 3 PCI_ATS_NOT_SUPPORTED. */
  capabilities: bigint;
  maxPasidLog2: number;
}

/** IOMMU_OPTION_RLIMIT_MODE: pin accounting per user (io_uring style) or per process (VFIO style). */
export type RlimitMode = 'user' | 'mm';

export class Iommufd implements Disposable {
  readonly fd: number;
  private closed = false;
  private scratch: UserMemory | null = null;
  /** @internal preallocated command buffers, one per command kind. */
  readonly cmds = new Map<IoctlDesc, Command>();

  constructor(
    readonly binding: Binding,
    path = '/dev/iommu',
  ) {
    try {
      this.fd = binding.open(path, O_RDWR | O_CLOEXEC);
    } catch (e) {
      throw explainIommufdOpen(binding, e);
    }
  }

  static open(opts: OpenOptions = {}): Iommufd {
    return new Iommufd(openBinding(opts.backend, opts.sim), opts.path);
  }

  /** @internal the reusable command buffer for `desc`, zeroed with its size set. */
  cmd(desc: IoctlDesc): Command {
    let c = this.cmds.get(desc);
    if (!c) this.cmds.set(desc, (c = new Command(desc)));
    return c.reset();
  }

  /** @internal issue a command made by cmd(); throws IommuError with the kernel's errno. */
  ioctl(c: Command): number {
    return this.binding.ioctl(this.fd, c.desc.request, c.buf);
  }

  /** @internal user memory for commands that take a user pointer (range arrays). */
  userScratch(bytes: number): UserMemory {
    if (!this.scratch || this.scratch.length < bytes) {
      this.scratch?.close();
      this.scratch = UserMemory.anonymous(this.binding, Math.max(4096, Math.ceil(bytes / 4096) * 4096));
    }
    return this.scratch;
  }

  // ---- objects --------------------------------------------------------------------------------

  /** IOMMU_IOAS_ALLOC */
  allocIoas(): Ioas {
    const c = this.cmd(IOCTLS.IOAS_ALLOC);
    this.ioctl(c);
    return new Ioas(this, c.get32('out_ioas_id'));
  }

  /** An Ioas handle for an id that already exists in this context. */
  ioas(id: number): Ioas {
    return new Ioas(this, id);
  }

  /** IOMMU_HWPT_ALLOC: a paging HWPT on an IOAS, or a nested one on a NEST_PARENT HWPT. */
  allocHwpt(opts: HwptAllocOptions): Hwpt {
    return Hwpt.alloc(this, opts);
  }

  /** IOMMU_FAULT_QUEUE_ALLOC: a queue for I/O page faults of HWPTs allocated with its id. */
  allocFaultQueue(): FaultQueue {
    return FaultQueue.alloc(this);
  }

  /** IOMMU_VEVENTQ_ALLOC: a vIOMMU's queue of events of one type. */
  allocVeventQueue(opts: VeventQueueOptions): VeventQueue {
    return VeventQueue.alloc(this, opts);
  }

  /**
   * IOMMU_GET_HW_INFO for a bound device: the IOMMU's type and driver payload (struct
   * iommu_hw_info_vtd, _arm_smmuv3, ...), capability bits and PASID width. `dataLen` is the
   * buffer offered (default 256); `inType` asks for a specific payload type.
   */
  hwInfo(devId: number, opts: { dataLen?: number; inType?: number } = {}): HwInfo {
    const len = opts.dataLen ?? 256;
    const mem = len ? this.userScratch(len) : null;
    const c = this.cmd(IOCTLS.GET_HW_INFO).u32('dev_id', devId).u32('data_len', len).u64('data_uptr', mem?.addr ?? 0n);
    if (opts.inType !== undefined) c.u32('flags', 1).u32('out_data_type', opts.inType);
    this.ioctl(c);
    const dataLen = c.get32('data_len');
    return {
      type: c.get32('out_data_type'),
      dataLen,
      data: mem ? mem.bytes.slice(0, Math.min(len, dataLen)) : new Uint8Array(0),
      capabilities: c.get64('out_capabilities'),
      maxPasidLog2: c.dv.getUint8(c.off.out_max_pasid_log2!),
    };
  }

  /** IOMMU_DESTROY: ENOENT for an unknown id, EBUSY while something still uses the object. */
  destroy(id: number): void {
    this.ioctl(this.cmd(IOCTLS.DESTROY).u32('id', id));
  }

  // ---- options --------------------------------------------------------------------------------

  /** The kernel answers 0 (user) or 1 (mm); any other value is not the uAPI and throws a RangeError. */
  getRlimitMode(): RlimitMode {
    const c = this.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_RLIMIT_MODE).u16('op', IOMMU_OPTION_OP_GET);
    this.ioctl(c);
    const v = c.get64('val64');
    if (v === 0n) return 'user';
    if (v === 1n) return 'mm';
    throw new RangeError(`IOMMU_OPTION_RLIMIT_MODE: the kernel answered ${v}, not 0 or 1`);
  }

  /** Needs CAP_SYS_RESOURCE (EPERM) and a context with no objects yet (EBUSY). */
  setRlimitMode(mode: RlimitMode | bigint): void {
    const v = typeof mode === 'bigint' ? mode : mode === 'mm' ? 1n : 0n;
    this.ioctl(this.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_RLIMIT_MODE).u16('op', IOMMU_OPTION_OP_SET).u64('val64', v));
  }

  /**
   * IOMMU_IOAS_CHANGE_PROCESS: charge the pinned pages of every mapping in this context to the
   * calling process (a live update hands the iommufd to a new process). Only IOMMU_IOAS_MAP_FILE
   * mappings can move: any other mapping makes it EINVAL, and a failure changes nothing.
   */
  changeProcess(): void {
    this.ioctl(this.cmd(IOCTLS.IOAS_CHANGE_PROCESS));
  }

  // ---- IOMMU_VFIO_IOAS: the IOAS that VFIO container ioctls on this fd operate on ------------

  /** The compat IOAS id, or null when none is set (the kernel's ENODEV). */
  getVfioIoas(): number | null {
    const c = this.cmd(IOCTLS.VFIO_IOAS).u16('op', IOMMU_VFIO_IOAS_GET);
    try {
      this.ioctl(c);
    } catch (e) {
      if (isErrno(e, 'ENODEV')) return null;
      throw e;
    }
    return c.get32('ioas_id');
  }

  setVfioIoas(ioas: Ioas | number): void {
    const id = typeof ioas === 'number' ? ioas : ioas.id;
    this.ioctl(this.cmd(IOCTLS.VFIO_IOAS).u32('ioas_id', id).u16('op', IOMMU_VFIO_IOAS_SET));
  }

  clearVfioIoas(): void {
    this.ioctl(this.cmd(IOCTLS.VFIO_IOAS).u16('op', IOMMU_VFIO_IOAS_CLEAR));
  }

  // ---- memory through the same backend ------------------------------------------------------

  /** Anonymous memory of this process (simulated on sim, mmap'd on linux). */
  mmap(length: number, opts?: MmapOptions): UserMemory {
    return UserMemory.anonymous(this.binding, length, opts);
  }

  memfd(name: string, size: number): MemFd {
    return new MemFd(this.binding, name, size);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.scratch?.close();
    this.binding.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
