// SPDX-License-Identifier: MIT
/*
 * BAR mappings through the bridge (see mmio.h).
 *
 * The program's mapping of a BAR is a PROT_NONE shared mapping of /dev/zero, placed with the
 * program's own flags (so mmap's checks of MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_SHARED_VALIDATE,
 * the address and the offset are the kernel's), and recorded here with the protection the program
 * asked for. Its loads and stores fault (SEGV_ACCERR); the SIGSEGV handler, installed with the first
 * BAR mapping, finds the range, decodes the instruction and performs the access through the bridge,
 * which runs it on the sim device as a read or write of the region at that offset. The result goes
 * into the destination register and the program resumes after the instruction.
 *
 * What the handler decodes: the moves compilers emit for volatile MMIO accesses (readl/writel and
 * friends): mov r/m,r and r,r/m (88, 89, 8A, 8B), mov r/m,imm (C6, C7), movzx (0F B6, 0F B7),
 * movsx (0F BE, 0F BF) and movsxd (63), with the 66 and REX prefixes and every ModRM/SIB/disp
 * form, RIP-relative included. Any other instruction touching a BAR (a string move, an SSE load, a
 * locked or read-modify-write one, a segment override) is not emulated: the program gets SIGSEGV
 * with its default action and a line on stderr saying so, where the kernel would have done the
 * access.
 *
 * Faults that are not ours (outside every BAR range, or an access the range's protection refuses)
 * go to the handler that was installed before ours, or get the default action, as the kernel would
 * deliver them. A BAR access the device refuses (memory decode off in the command register:
 * vfio_pci_mmap_huge_fault's VM_FAULT_SIGBUS) is SIGBUS (BUS_ADRERR at the address), delivered
 * as the kernel's force_sig_fault does, once the handler returns, with the faulting instruction's
 * context.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "mmio.h"

/* More ranges than a process can usefully have (each munmap or mprotect inside one splits it). */
#define MAX_RANGES 4096

struct range {
	uintptr_t start, end;
	int prot;
};

static struct range ranges[MAX_RANGES];
static int nranges;
/* Guards ranges. Never held while the program runs its own code, so a fault never finds it taken by its own thread. */
static pthread_mutex_t range_lock = PTHREAD_MUTEX_INITIALIZER;

static uintptr_t page_up(uintptr_t n)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	return (n + page - 1) & ~(page - 1);
}

/*
 * Set the protection of [lo, hi) inside the ranges to `prot`, or forget it (prot < 0). A range
 * partly inside keeps its pieces outside, as munmap and mprotect split a VMA. Lock held.
 */
static void cut(uintptr_t lo, uintptr_t hi, int prot)
{
	for (int i = 0; i < nranges; i++) {
		struct range r = ranges[i];
		if (r.end <= lo || r.start >= hi)
			continue;
		/* the pieces outside [lo, hi) go to the end of the table, where this loop passes them by */
		if (r.start < lo && nranges < MAX_RANGES)
			ranges[nranges++] = (struct range){ r.start, lo, r.prot };
		if (r.end > hi && nranges < MAX_RANGES)
			ranges[nranges++] = (struct range){ hi, r.end, r.prot };
		if (prot >= 0) {
			ranges[i] = (struct range){ r.start > lo ? r.start : lo, r.end < hi ? r.end : hi, prot };
		} else {
			ranges[i--] = ranges[--nranges];
		}
	}
}

void mmio_forget(uintptr_t addr, size_t len)
{
	if (!__atomic_load_n(&nranges, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&range_lock);
	cut(addr, addr + page_up(len), -1);
	pthread_mutex_unlock(&range_lock);
}

#if defined(__x86_64__)

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_mprotect)(void *, size_t, int);
/* The SIGSEGV action in place before ours: faults that are not BAR accesses go there. */
static struct sigaction prev;
static int installed;

/* The range holding `a` (a copy), or 0. */
static int find(uintptr_t a, struct range *out)
{
	int hit = 0;
	pthread_mutex_lock(&range_lock);
	for (int i = 0; i < nranges && !hit; i++) {
		if (a >= ranges[i].start && a < ranges[i].end) {
			*out = ranges[i];
			hit = 1;
		}
	}
	pthread_mutex_unlock(&range_lock);
	return hit;
}

/* ---- the instruction ---------------------------------------------------------------------- */

/* The ModRM register numbers (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15) as gregs indexes. */
static const int greg_of[16] = {
	REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
	REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

struct insn {
	unsigned len; /* bytes of the instruction */
	uintptr_t ea; /* the memory operand's address */
	unsigned size; /* bytes it moves: 1, 2, 4 or 8 */
	int write; /* a store (of `value`), else a load into `reg` */
	uint64_t value;
	int reg; /* a load's destination register (its ModRM number) */
	unsigned dsize; /* and its width */
	int high8; /* AH, CH, DH or BH (reg - 4 is the register holding it) */
	int sext; /* sign-extend what is loaded (movsx, movsxd) */
};

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Without a REX prefix, byte registers 4-7 are AH, CH, DH, BH. */
static int is_high8(int rex, int reg)
{
	return !rex && reg >= 4 && reg < 8;
}

/* Decode the instruction at `ip` with the registers `g`: 0, or -1 for one this file does not emulate. */
static int decode(const uint8_t *ip, const greg_t *g, struct insn *in)
{
	const uint8_t *p = ip;
	int o16 = 0, rex = 0, twobyte = 0, imm = 0, op, modrm, mod, rm, osize;
	uintptr_t ea = 0;
	int riprel = 0;

	memset(in, 0, sizeof(*in));
	while (*p == 0x66 && p - ip < 4) {
		o16 = 1;
		p++;
	}
	if ((*p & 0xf0) == 0x40)
		rex = *p++;
	op = *p++;
	if (op == 0x0f) {
		twobyte = 1;
		op = *p++;
	}
	osize = rex & 8 ? 8 : o16 ? 2 : 4;
	if (!twobyte) {
		switch (op) {
		case 0x88: /* mov r/m8, r8 */
			in->write = 1;
			in->size = 1;
			break;
		case 0x89: /* mov r/m, r */
			in->write = 1;
			in->size = osize;
			break;
		case 0x8a: /* mov r8, r/m8 */
			in->size = in->dsize = 1;
			break;
		case 0x8b: /* mov r, r/m */
			in->size = in->dsize = osize;
			break;
		case 0x63: /* movsxd r64, r/m32 (without REX.W a 32-bit move) */
			if (o16)
				return -1;
			in->size = 4;
			in->dsize = osize;
			in->sext = 1;
			break;
		case 0xc6: /* mov r/m8, imm8 */
			in->write = 1;
			in->size = imm = 1;
			break;
		case 0xc7: /* mov r/m, imm16/imm32 (sign-extended with REX.W) */
			in->write = 1;
			in->size = osize;
			imm = osize == 2 ? 2 : 4;
			break;
		default:
			return -1;
		}
	} else {
		switch (op) {
		case 0xb6: /* movzx r, r/m8 */
		case 0xbe: /* movsx r, r/m8 */
			in->size = 1;
			break;
		case 0xb7: /* movzx r, r/m16 */
		case 0xbf: /* movsx r, r/m16 */
			in->size = 2;
			break;
		default:
			return -1;
		}
		in->dsize = osize;
		in->sext = op >= 0xbe;
	}
	modrm = *p++;
	mod = modrm >> 6;
	rm = modrm & 7;
	in->reg = ((modrm >> 3) & 7) | (rex & 4 ? 8 : 0);
	/* a register operand touches no memory; C6 and C7 are mov only with /0 */
	if (mod == 3 || (imm && ((modrm >> 3) & 7)))
		return -1;
	if (rm == 4) {
		int sib = *p++, index = ((sib >> 3) & 7) | (rex & 2 ? 8 : 0), base = sib & 7;
		if (index != 4)
			ea += (uintptr_t)g[greg_of[index]] << (sib >> 6);
		if (base == 5 && mod == 0) {
			ea += (uintptr_t)(int64_t)(int32_t)le(p, 4);
			p += 4;
		} else {
			ea += (uintptr_t)g[greg_of[base | (rex & 1 ? 8 : 0)]];
		}
	} else if (rm == 5 && mod == 0) {
		riprel = 1;
		ea += (uintptr_t)(int64_t)(int32_t)le(p, 4);
		p += 4;
	} else {
		ea += (uintptr_t)g[greg_of[rm | (rex & 1 ? 8 : 0)]];
	}
	if (mod == 1) {
		ea += (uintptr_t)(int64_t)(int8_t)*p;
		p += 1;
	} else if (mod == 2) {
		ea += (uintptr_t)(int64_t)(int32_t)le(p, 4);
		p += 4;
	}
	if (imm) {
		in->value = le(p, imm);
		if (imm == 4)
			in->value = (uint64_t)(int64_t)(int32_t)in->value;
		p += imm;
	} else if (in->write) {
		int high = in->size == 1 && is_high8(rex, in->reg);
		in->value = (uint64_t)g[greg_of[high ? in->reg - 4 : in->reg]] >> (high ? 8 : 0);
	}
	if (in->size < 8)
		in->value &= (1ULL << (8 * in->size)) - 1;
	in->high8 = in->dsize == 1 && is_high8(rex, in->reg);
	in->len = (unsigned)(p - ip);
	/* RIP-relative: from the end of the instruction */
	in->ea = ea + (riprel ? (uintptr_t)ip + in->len : 0);
	return 0;
}

/* A load's value into its destination register: widened (zero or sign) and merged as mov does. */
static void load_into(greg_t *g, const struct insn *in, uint64_t v)
{
	unsigned bits = 8 * in->size;
	greg_t *r = &g[greg_of[in->high8 ? in->reg - 4 : in->reg]];
	uint64_t old = (uint64_t)*r;

	if (bits < 64) {
		v &= (1ULL << bits) - 1;
		if (in->sext && (v >> (bits - 1)) & 1)
			v |= ~0ULL << bits;
	}
	switch (in->dsize) {
	case 1:
		*r = (greg_t)(in->high8 ? (old & ~0xff00ULL) | (v & 0xff) << 8 : (old & ~0xffULL) | (v & 0xff));
		break;
	case 2:
		*r = (greg_t)((old & ~0xffffULL) | (v & 0xffff));
		break;
	case 4: /* a 32-bit destination zero-extends into the whole register */
		*r = (greg_t)(uint32_t)v;
		break;
	default:
		*r = (greg_t)v;
	}
}

/* ---- signals ------------------------------------------------------------------------------ */

static void set_default(int sig, ucontext_t *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigaction(sig, &dfl, NULL);
	sigdelset(&uc->uc_sigmask, sig);
}

/* Queue `info` to this thread, to be taken once the handler returns (with the interrupted context). */
static void queue_self(int sig, siginfo_t *info)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)syscall(SYS_gettid), sig, info);
}

/*
 * A SIGSEGV that is not a BAR access: as the kernel would have delivered it without us. To the
 * handler before ours; with the default action (or ignored, which a fault overrides) the
 * instruction runs again with SIG_DFL in place and faults for real; a SIGSEGV someone sent is
 * sent again.
 */
static void chain(int sig, siginfo_t *si, ucontext_t *uc)
{
	struct sigaction p = prev;
	int fault = si->si_code > 0;

	if (p.sa_handler == SIG_DFL || p.sa_handler == SIG_IGN) {
		if (p.sa_handler == SIG_IGN && !fault)
			return;
		set_default(sig, uc);
		if (!fault)
			queue_self(sig, si);
		return;
	}
	if (p.sa_flags & SA_SIGINFO)
		p.sa_sigaction(sig, si, uc);
	else
		p.sa_handler(sig);
}

/*
 * force_sig_fault(SIGBUS, BUS_ADRERR, addr): a blocked or ignored SIGBUS is unblocked and set to
 * its default action first.
 */
static void bus_error(void *addr, ucontext_t *uc)
{
	struct sigaction cur;
	siginfo_t info;

	sigaction(SIGBUS, NULL, &cur);
	if (cur.sa_handler == SIG_IGN || sigismember(&uc->uc_sigmask, SIGBUS))
		set_default(SIGBUS, uc);
	memset(&info, 0, sizeof(info));
	info.si_signo = SIGBUS;
	info.si_code = BUS_ADRERR;
	info.si_addr = addr;
	queue_self(SIGBUS, &info);
}

/* An access to a BAR this file cannot emulate: say so, then the default SIGSEGV. */
static void unsupported(const uint8_t *ip, uintptr_t addr, int readable, ucontext_t *uc)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg),
			 "ioasid bridge: the instruction at %p accesses BAR memory at 0x%lx in a way the bridge "
			 "does not emulate (only mov, movzx, movsx, movsxd);",
			 (void *)ip, (unsigned long)addr);
	for (int i = 0; readable && i < 8 && n < (int)sizeof(msg) - 8; i++)
		n += snprintf(msg + n, sizeof(msg) - n, " %02x", ip[i]);
	if (n < (int)sizeof(msg) - 1)
		msg[n++] = '\n';
	syscall(SYS_write, 2, msg, (size_t)n);
	set_default(SIGSEGV, uc);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	const uint8_t *ip = (const uint8_t *)g[REG_RIP];
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved = errno;
	struct range r, code;
	struct insn in;
	uint64_t v;
	int64_t ret;
	int fetch = 0;

	if (si->si_code != SEGV_ACCERR || !find(a, &r)) {
		chain(sig, si, uc);
	} else if ((fetch = find((uintptr_t)ip, &code)) || decode(ip, g, &in) || in.ea > a || a - in.ea >= in.size ||
		   in.ea < r.start || in.ea + in.size > r.end) {
		/* executing from a BAR, an instruction not decoded here, or an access leaving the range */
		unsupported(ip, a, !fetch, uc);
	} else if (!(r.prot & (in.write ? PROT_WRITE : PROT_READ | PROT_WRITE | PROT_EXEC))) {
		/* what the mapping's protection refuses is a real SEGV_ACCERR (on x86 every mapping that is not PROT_NONE reads) */
		chain(sig, si, uc);
	} else {
		v = in.value;
		ret = bridge_mmio(in.ea, in.size, in.write, &v);
		if (ret == -EFAULT) {
			chain(sig, si, uc); /* the sim knows no BAR there any more */
		} else if (ret < 0) {
			bus_error((void *)a, uc);
		} else {
			if (!in.write)
				load_into(g, &in, v);
			g[REG_RIP] += in.len;
		}
	}
	errno = saved;
}

static void lock_ranges(void)
{
	pthread_mutex_lock(&range_lock);
}

static void unlock_ranges(void)
{
	pthread_mutex_unlock(&range_lock);
}

/* Install the handler (once) and find the real mmap and mprotect. */
static int install(void)
{
	struct sigaction sa;

	if (installed)
		return 0;
	real_mmap = dlsym(RTLD_NEXT, "mmap");
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &prev))
		return -1;
	/* a fork while another thread holds the lock must not leave it held in the child */
	pthread_atfork(lock_ranges, unlock_ranges, unlock_ranges);
	installed = 1;
	return 0;
}

void *mmio_map(void *addr, size_t len, int prot, int flags, off_t off)
{
	void *p = MAP_FAILED;
	int z, e;

	pthread_mutex_lock(&range_lock);
	if (install())
		goto out;
	if (nranges == MAX_RANGES) {
		errno = ENOMEM;
		goto out;
	}
	z = (int)syscall(SYS_openat, AT_FDCWD, "/dev/zero", O_RDWR | O_CLOEXEC);
	if (z < 0)
		goto out;
	p = real_mmap(addr, len, PROT_NONE, flags, z, off);
	e = errno;
	syscall(SYS_close, z);
	errno = e;
	if (p == MAP_FAILED)
		goto out;
	/* MAP_FIXED over another BAR mapping replaces it */
	cut((uintptr_t)p, (uintptr_t)p + page_up(len), -1);
	ranges[nranges] = (struct range){ (uintptr_t)p, (uintptr_t)p + page_up(len), prot };
	__atomic_store_n(&nranges, nranges + 1, __ATOMIC_RELAXED);
out:
	pthread_mutex_unlock(&range_lock);
	return p;
}

/*
 * mprotect over a BAR mapping: the new protection is what the fault handler enforces there, and
 * the pages themselves stay PROT_NONE. (Between the two calls a thread reading that BAR in the
 * same instant would read a zero instead of faulting.)
 */
int mprotect(void *addr, size_t len, int prot)
{
	int r;

	if (!real_mprotect)
		real_mprotect = dlsym(RTLD_NEXT, "mprotect");
	if (!__atomic_load_n(&nranges, __ATOMIC_RELAXED))
		return real_mprotect(addr, len, prot);
	pthread_mutex_lock(&range_lock);
	r = real_mprotect(addr, len, prot);
	if (r == 0) {
		uintptr_t lo = (uintptr_t)addr, hi = lo + page_up(len);
		cut(lo, hi, prot);
		/* the pieces now inside [lo, hi) */
		for (int i = 0; i < nranges; i++) {
			if (ranges[i].start < hi && ranges[i].end > lo)
				real_mprotect((void *)ranges[i].start, ranges[i].end - ranges[i].start, PROT_NONE);
		}
	}
	pthread_mutex_unlock(&range_lock);
	return r;
}

#else /* !__x86_64__ */

/* The fault handler decodes x86-64 instructions only: elsewhere a BAR cannot be mapped through the bridge. */
void *mmio_map(void *addr, size_t len, int prot, int flags, off_t off)
{
	(void)addr;
	(void)len;
	(void)prot;
	(void)flags;
	(void)off;
	errno = ENODEV;
	return MAP_FAILED;
}

#endif
