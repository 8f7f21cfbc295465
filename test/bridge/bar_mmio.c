/*
 * mmap of an edu's BAR0 and plain loads and stores to its registers, run natively on the kernel
 * and against the sim through the bridge (test/bridge_mmio.test.ts): both must print the same.
 *
 *   bar_mmio group /dev/vfio/GROUP BDF    the legacy API (type1v2 container)
 *   bar_mmio cdev /dev/vfio/devices/vfioN the device's cdev bound to an iommufd
 *   ... sse                               only: an SSE load from the BAR, in a child
 *
 * It prints what the kernel answers: the mmap refusals, register values read with each width and
 * addressing form, a DMA mapping of the BAR's address, SIGBUS with memory decode off, a forked
 * child using the parent's mapping, protections, and the mapping outliving the device's fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vfio_util.h"

#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define MIB (1UL << 20)

typedef volatile uint8_t vu8;
typedef volatile uint16_t vu16;
typedef volatile uint32_t vu32;
typedef volatile uint64_t vu64;

static int dev, group = -1, container = -1, iommufd = -1;
static const char *cdev;
static uint32_t ioas;
static off_t bar0, config;

/* A page of .bss the BAR is mapped over, so that code reaches it RIP-relative. */
static uint32_t window[1024] __attribute__((aligned(4096), used));

static const char *signame(int sig)
{
	return sig == SIGBUS ? "SIGBUS" : sig == SIGSEGV ? "SIGSEGV" : strsignal(sig);
}

/* Run fn in a child; print how it ended. */
static void in_child(const char *what, void (*fn)(void *), void *arg)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		fn(arg);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status))
		printf("%s: killed by %s\n", what, signame(WTERMSIG(status)));
	else
		printf("%s: exited %d\n", what, WEXITSTATUS(status));
}

static uint16_t command(void)
{
	uint16_t v;
	if (pread(dev, &v, 2, config + PCI_COMMAND) != 2)
		die("pread PCI_COMMAND");
	return v;
}

static void set_command(uint16_t v)
{
	if (pwrite(dev, &v, 2, config + PCI_COMMAND) != 2)
		die("pwrite PCI_COMMAND");
}

static int bind_cdev(int fd)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	return ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
}

static void open_cdev(const char *path)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };

	cdev = path;
	iommufd = open("/dev/iommu", O_RDWR);
	dev = open(path, O_RDWR);
	if (iommufd < 0 || dev < 0)
		die("open");
	if (bind_cdev(dev))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");
	ioas = at.pt_id = alloc.out_ioas_id;
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
}

static struct vfio_region_info region(unsigned index)
{
	struct vfio_region_info info = { .argsz = sizeof(info), .index = index };
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info))
		die("VFIO_DEVICE_GET_REGION_INFO");
	return info;
}

static void try_map(const char *what, void *addr, size_t len, int flags, off_t off)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE, flags, dev, off);
	if (p == MAP_FAILED) {
		printf("mmap %s: %s\n", what, strerror(errno));
	} else {
		printf("mmap %s: mapped\n", what);
		munmap(p, len);
	}
}

/* A PROT_NONE area with `len` bytes aligned to `align` in it (the vfio selftests' mmap_reserve). */
static char *reserve(size_t len, size_t align)
{
	char *base = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *at;
	if (base == MAP_FAILED)
		die("mmap reserve");
	at = (char *)(((uintptr_t)base + align - 1) & ~(align - 1));
	if (at > base)
		munmap(base, at - base);
	munmap(at + len, base + align - at);
	return at;
}

static void refusals(void)
{
	char *area = reserve(MIB, MIB);

	try_map("MAP_PRIVATE", NULL, 4096, MAP_PRIVATE, bar0);
	try_map("past the end of BAR0", NULL, 2 * MIB, MAP_SHARED, bar0);
	try_map("at an offset past BAR0", NULL, 4096, MAP_SHARED, bar0 + MIB);
	try_map("of BAR1 (none)", NULL, 4096, MAP_SHARED, (off_t)1 << 40);
	try_map("of the config region", NULL, 4096, MAP_SHARED, config);
	try_map("MAP_SHARED_VALIDATE|MAP_SYNC", NULL, 4096, MAP_SHARED_VALIDATE | MAP_SYNC, bar0);
	try_map("MAP_FIXED at an unaligned address", area + 1, 4096, MAP_SHARED | MAP_FIXED, bar0);
	try_map("MAP_FIXED_NOREPLACE over a mapping", area, 4096, MAP_SHARED | MAP_FIXED_NOREPLACE, bar0);
	munmap(area, MIB);
}

/* ---- the accesses ---------------------------------------------------------------------------- */

/* 4(%r12) from r9d, then (%r13): REX.R and REX.B, a SIB byte for r12, a disp8 of 0 for r13. */
static uint32_t liveness_r9_r12_r13(char *bar, uint32_t x)
{
	uint32_t v;
	__asm__ volatile("mov %[bar], %%r12\n\t"
			 "lea 4(%[bar]), %%r13\n\t"
			 "mov %[x], %%r9d\n\t"
			 "movl %%r9d, 4(%%r12)\n\t"
			 "movl (%%r13), %[v]"
			 : [v] "=&r"(v)
			 : [bar] "r"(bar), [x] "r"(x)
			 : "r9", "r12", "r13", "memory");
	return v;
}

/* (base, index, 4): a SIB with an index. */
static uint32_t load_sib(char *bar, long index)
{
	uint32_t v;
	__asm__ volatile("movl (%1,%2,4), %0" : "=r"(v) : "r"(bar), "r"(index) : "memory");
	return v;
}

/* One load instruction: %0 its destination register (holding `init` before), %1 the address. */
#define LOAD(insn, init, at)                                            \
	({                                                              \
		uint64_t v_ = (init);                                   \
		__asm__ volatile(insn : "+r"(v_) : "r"(at) : "memory"); \
		v_;                                                     \
	})
/* One store instruction of an immediate: %0 the address. */
#define STORE(insn, at) __asm__ volatile(insn : : "r"(at) : "memory")

/* movb (base), %ah: the high byte of rax, the rest kept. */
static uint64_t load_ah(char *at)
{
	uint64_t v = 0x1111111111111111ULL;
	__asm__ volatile("movb (%1), %%ah" : "+a"(v) : "r"(at) : "memory");
	return v;
}

static void accesses(char *bar)
{
	uint32_t fact;

	printf("id (u32): 0x%08x\n", *(vu32 *)bar);
	printf("id (movsxd): 0x%016llx\n", (unsigned long long)LOAD("movslq (%1), %0", 0, bar));
	*(vu32 *)(bar + 4) = 0x12345678;
	printf("liveness after 0x12345678 (u32 store, u32 load): 0x%08x\n", *(vu32 *)(bar + 4));
	printf("liveness after 0x789abcde (r9d to 4(%%r12), (%%r13)): 0x%08x\n", liveness_r9_r12_r13(bar, 0x789abcde));
	printf("liveness (SIB, index 1 scale 4): 0x%08x\n", load_sib(bar, 1));
	printf("liveness (movsxd): 0x%016llx\n", (unsigned long long)LOAD("movslq (%1), %0", 0, bar + 4));
	STORE("movb $0x55, 4(%0)\n\tmovw $0x1234, 4(%0)", bar);
	__asm__ volatile("movb %b1, 4(%0)\n\tmovw %w1, 4(%0)" : : "r"(bar), "r"(0x7777) : "memory");
	printf("liveness after u8 and u16 stores (immediates, registers): 0x%08x\n", *(vu32 *)(bar + 4));
	printf("id (u8): 0x%02x, into %%ah: 0x%016llx\n", *(vu8 *)bar, (unsigned long long)load_ah(bar));
	/* movzbw: the low 16 bits replaced, the rest kept */
	printf("id (u16): 0x%04x, movzbw: 0x%016llx\n", *(vu16 *)bar, (unsigned long long)LOAD("movzbw (%1), %w0", 0xaaaaaaaaaaaaaaaaULL, bar));
	printf("id (movsbl, movswq): 0x%016llx 0x%016llx\n", (unsigned long long)LOAD("movsbl (%1), %k0", ~0ULL, bar),
	       (unsigned long long)LOAD("movswq (%1), %0", ~0ULL, bar));
	printf("id (u64, below 0x80): 0x%016llx\n", (unsigned long long)*(vu64 *)bar);
	/* REX.W C7 with a disp32: the immediate sign-extended */
	STORE("movq $-0x10000000, 0x80(%0)", bar);
	printf("DMA source after movq $-0x10000000 (disp32): 0x%016llx\n", (unsigned long long)LOAD("movq 0x80(%1), %0", 0, bar));
	*(vu64 *)(bar + 0x88) = 0x1122334455667788ULL;
	printf("DMA destination (u64), low half (u32): 0x%016llx 0x%08x\n", (unsigned long long)*(vu64 *)(bar + 0x88), *(vu32 *)(bar + 0x88));
	*(vu32 *)(bar + 8) = 10;
	while (*(vu32 *)(bar + 0x20) & 1)
		;
	fact = *(vu32 *)(bar + 8);
	printf("factorial of 10: %u\n", fact);
}

/* The BAR's first page over a page of .bss: RIP-relative loads and stores. */
static void rip_relative(void)
{
	uint32_t id, live;
	void *p = mmap(window, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, dev, bar0);
	if (p != (void *)window)
		die("mmap over .bss");
	__asm__ volatile("movl $0x0badcafe, window+4(%%rip)\n\t"
			 "movl window(%%rip), %0\n\t"
			 "movl window+4(%%rip), %1"
			 : "=r"(id), "=r"(live) : : "memory");
	printf("RIP-relative: id 0x%08x, liveness after 0x0badcafe 0x%08x\n", id, live);
	/* anonymous memory back over it: MAP_FIXED over the BAR mapping ends it */
	if (mmap(window, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != (void *)window)
		die("mmap anonymous over the BAR");
	/* through the bridge, an mprotect over a BAR range it still knew would make the page fault into a device read */
	if (mprotect(window, 4096, PROT_READ))
		die("mprotect the anonymous page");
	printf("after anonymous memory replaced it: %u\n", window[0]);
}

static void dma_map(char *bar, const char *when)
{
	if (container >= 0) {
		struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
							.vaddr = (uintptr_t)bar, .iova = 0x100000, .size = MIB };
		struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = 0x100000, .size = MIB };
		if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map)) {
			printf("VFIO_IOMMU_MAP_DMA of BAR0 %s: %s\n", when, strerror(errno));
			return;
		}
		if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap))
			die("VFIO_IOMMU_UNMAP_DMA");
		printf("VFIO_IOMMU_MAP_DMA of BAR0 %s: mapped, then unmapped 0x%llx\n", when, (unsigned long long)unmap.size);
	} else {
		struct iommu_ioas_map map = { .size = sizeof(map), .ioas_id = ioas, .user_va = (uintptr_t)bar, .length = MIB, .iova = 0x100000,
					      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
		if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
			printf("IOMMU_IOAS_MAP of BAR0 %s: %s\n", when, strerror(errno));
		else
			printf("IOMMU_IOAS_MAP of BAR0 %s: mapped\n", when);
	}
}

static void load_id(void *bar)
{
	printf("child: id 0x%08x\n", *(vu32 *)bar);
}

static char *bar_base;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	printf("child: %s, %s at BAR0+0x%lx\n", signame(sig), si->si_code == BUS_ADRERR ? "BUS_ADRERR" : "another code",
	       (unsigned long)((char *)si->si_addr - bar_base));
	fflush(stdout);
	_exit(0);
}

static void store_with_handler(void *bar)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	sigaction(SIGBUS, &sa, NULL);
	*(vu32 *)((char *)bar + 4) = 1;
	printf("child: the store went through\n");
}

static void memory_off(char *bar)
{
	uint32_t v;
	uint16_t cmd = command();

	set_command(cmd & ~PCI_COMMAND_MEMORY);
	in_child("memory decode off, a load", load_id, bar);
	in_child("memory decode off, a store with a SIGBUS handler", store_with_handler, bar);
	if (pread(dev, &v, 4, bar0) < 0)
		printf("pread of BAR0 with memory decode off: %s\n", strerror(errno));
	else
		printf("pread of BAR0 with memory decode off: 0x%08x\n", v);
	dma_map(bar, "with memory decode off");
	set_command(cmd);
	printf("memory decode on again: id 0x%08x\n", *(vu32 *)bar);
}

static void child_uses_mapping(void *bar)
{
	*(vu32 *)((char *)bar + 4) = 0xf0f0f0f0;
	printf("child: id 0x%08x, liveness after 0xf0f0f0f0 0x%08x\n", *(vu32 *)bar, *(vu32 *)((char *)bar + 4));
}

static void store_one(void *at)
{
	*(vu32 *)((char *)at + 4) = 1;
}

/*
 * The program's own SIGSEGV handler, installed before the BAR is mapped: with `segv_at` set it
 * reports the fault, else it puts the default action back and lets the access fault again.
 */
static char *volatile segv_at;

static void on_sigsegv(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	if (!segv_at) {
		signal(sig, SIG_DFL);
		return;
	}
	printf("child: SIGSEGV, %s at +0x%lx\n", si->si_code == SEGV_ACCERR ? "SEGV_ACCERR" : si->si_code == SEGV_MAPERR ? "SEGV_MAPERR" : "another code",
	       (unsigned long)((char *)si->si_addr - segv_at));
	fflush(stdout);
	_exit(0);
}

static void store_reported(void *at)
{
	segv_at = at;
	store_one(at);
}

static void load_second_page(void *at)
{
	segv_at = at;
	load_id((char *)at + 4096);
}

static void protections(char *bar)
{
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, dev, bar0);
	if (ro == MAP_FAILED)
		die("mmap PROT_READ");
	printf("PROT_READ mapping: id 0x%08x\n", *(vu32 *)ro);
	in_child("PROT_READ mapping, a store", store_one, ro);
	in_child("PROT_READ mapping, a store, the program's handler", store_reported, ro);
	if (mprotect(ro, 4096, PROT_READ | PROT_WRITE))
		die("mprotect");
	*(vu32 *)(ro + 4) = 0x01020304;
	printf("after mprotect(PROT_READ|PROT_WRITE), liveness after 0x01020304: 0x%08x\n", *(vu32 *)(bar + 4));
	if (mprotect(ro, 4096, PROT_NONE))
		die("mprotect");
	in_child("PROT_NONE after mprotect, a load", load_id, ro);
	munmap(ro, 4096);
}

static void partial_unmap(void)
{
	char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, dev, bar0);
	if (p == MAP_FAILED)
		die("mmap 3 pages");
	if (munmap(p + 4096, 4096))
		die("munmap");
	printf("3 pages, the middle one unmapped: id 0x%08x, page 2 at 0x2000: 0x%08x\n", *(vu32 *)p, *(vu32 *)(p + 2 * 4096));
	in_child("a load from the unmapped page", load_id, p + 4096);
	in_child("a load from the unmapped page, the program's handler", load_second_page, p);
	munmap(p, 3 * 4096);
}

/* Whether the device is still open: each mapping of its BAR holds the file, as vma->vm_file does. */
static void still_open(const char *when)
{
	if (group >= 0) {
		if (ioctl(group, VFIO_GROUP_UNSET_CONTAINER))
			printf("VFIO_GROUP_UNSET_CONTAINER %s: %s\n", when, strerror(errno));
		else
			printf("VFIO_GROUP_UNSET_CONTAINER %s: done\n", when);
	} else {
		int fd = open(cdev, O_RDWR);
		if (fd < 0)
			die("open");
		if (bind_cdev(fd))
			printf("VFIO_DEVICE_BIND_IOMMUFD of a new fd %s: %s\n", when, strerror(errno));
		else
			printf("VFIO_DEVICE_BIND_IOMMUFD of a new fd %s: bound\n", when);
		close(fd);
	}
}

static void sse_load(void *bar)
{
	uint32_t v;
	__asm__ volatile("movdqu (%1), %%xmm0\n\tmovd %%xmm0, %0" : "=r"(v) : "r"(bar) : "xmm0", "memory");
	printf("child: SSE load: 0x%08x\n", v);
}

int main(int argc, char **argv)
{
	struct rlimit no_core = { 0, 0 };
	struct vfio_region_info info;
	char *bar;

	setrlimit(RLIMIT_CORE, &no_core);
	struct sigaction segv = { .sa_sigaction = on_sigsegv, .sa_flags = SA_SIGINFO };

	setvbuf(stdout, NULL, _IOLBF, 0);
	sigaction(SIGSEGV, &segv, NULL);
	if (argc >= 4 && !strcmp(argv[1], "group"))
		dev = vfio_group_device(argv[2], argv[3], &group, &container);
	else if (argc >= 3 && !strcmp(argv[1], "cdev"))
		open_cdev(argv[2]);
	else
		return 2;
	info = region(VFIO_PCI_BAR0_REGION_INDEX);
	bar0 = info.offset;
	printf("BAR0: size 0x%llx, flags 0x%x\n", (unsigned long long)info.size, info.flags);
	config = region(VFIO_PCI_CONFIG_REGION_INDEX).offset;
	printf("memory decode at open: %s\n", command() & PCI_COMMAND_MEMORY ? "on" : "off");
	set_command(command() | PCI_COMMAND_MEMORY);

	bar = bar_base = reserve(MIB, MIB);
	if (mmap(bar, MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, dev, bar0) != bar)
		die("mmap BAR0");
	printf("BAR0 mapped where asked\n");
	if (!strcmp(argv[argc - 1], "sse")) {
		in_child("SSE load (movdqu)", sse_load, bar);
		return 0;
	}
	refusals();
	accesses(bar);
	rip_relative();
	dma_map(bar, "with memory decode on");
	memory_off(bar);
	in_child("a forked child using the mapping", child_uses_mapping, bar);
	printf("parent after the child: liveness 0x%08x\n", *(vu32 *)(bar + 4));
	protections(bar);
	partial_unmap();
	close(dev);
	printf("after closing the device fd: id 0x%08x\n", *(vu32 *)bar);
	still_open("with BAR0 still mapped");
	printf("munmap: %d\n", munmap(bar, MIB));
	still_open("after munmap");
	return 0;
}
