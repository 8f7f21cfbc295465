// SPDX-License-Identifier: MIT
/*
 * BAR mappings through the bridge (mmio.c). A VFIO BAR's registers are computed by the sim's device
 * on every access, so no shared memory can stand for them: the program gets an inaccessible
 * (PROT_NONE) mapping where it asked, and every load or store it makes there faults into a
 * SIGSEGV handler that decodes the instruction, performs the access through the bridge
 * (bridge_mmio) and resumes the program after it. Plain memory never takes that path.
 *
 * x86-64 only: elsewhere mmio_map answers ENODEV.
 */
#ifndef IOASID_MMIO_H
#define IOASID_MMIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Place the program's mapping of a BAR (the sim's driver has accepted the mmap): `len` bytes at
 * `addr` as the flags say (MAP_FIXED, a hint), with mmap's own checks of those flags, and record
 * the range with its protection. The address, or MAP_FAILED with errno.
 */
__attribute__((visibility("hidden"))) void *mmio_map(void *addr, size_t len, int prot, int flags, off_t off);

/* [addr, addr + len) no longer maps a BAR where it did (munmap, or a MAP_FIXED mapping over it). */
__attribute__((visibility("hidden"))) void mmio_forget(uintptr_t addr, size_t len);

/*
 * ioasid_preload.c's side: one load (`write` 0: *val gets the value) or store (of *val) of `size`
 * bytes at `addr` in a BAR this process mapped. 0, or -errno: -EFAULT where the sim knows no BAR
 * mapping, another (-EIO: the device refuses, memory decode being off) for a bus error.
 */
__attribute__((visibility("hidden"))) int64_t bridge_mmio(uintptr_t addr, unsigned size, int write, uint64_t *val);

#endif
