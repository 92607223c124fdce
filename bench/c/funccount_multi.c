/* W12: the C reference for `funccount 'LIB:*'`: read the library's function symbols
 * (.symtab and .dynsym, with libelf), one offset per address, leave out the functions named
 * after LIB (and their aliases), attach funccount_multi.bpf.o to all of them with one
 * uprobe.multi link (BPF_TRACE_UPROBE_MULTI, Linux >= 6.6; libbpf 1.1 has no wrapper, so
 * BPF_LINK_CREATE is called by hand), print "Tracing N functions", and on SIGINT detach,
 * close and exit.
 *
 * usage: funccount_multi OBJ LIB [LEAVE_OUT...] */
#include "bench.h"
#include <fcntl.h>
#include <gelf.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BPF_TRACE_UPROBE_MULTI_ATTACH 48

static volatile sig_atomic_t stop;

static void on_sigint(int sig)
{
	(void)sig;
	stop = 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Function symbols' file offsets, sorted and unique, without those of the names in leave_out. */
static size_t function_offsets(const char *path, char **leave_out, int n_leave, uint64_t **out)
{
	size_t n = 0, cap = 4096, n_bad = 0, kept = 0;
	uint64_t *offs = malloc(cap * sizeof(*offs)), bad[64];
	GElf_Phdr phdrs[32];
	size_t n_phdr;
	Elf_Scn *scn = NULL;
	Elf *elf;
	int fd;

	elf_version(EV_CURRENT);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path, errno);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_getphdrnum(elf, &n_phdr) || n_phdr > 32)
		die("elf_begin", EINVAL);
	for (size_t i = 0; i < n_phdr; i++)
		gelf_getphdr(elf, i, &phdrs[i]);
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		gelf_getshdr(scn, &sh);
		if (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM)
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			int type;
			const char *name;

			gelf_getsym(data, i, &sym);
			type = GELF_ST_TYPE(sym.st_info);
			if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			for (size_t p = 0; p < n_phdr; p++) {
				if (phdrs[p].p_type != PT_LOAD || !(phdrs[p].p_flags & PF_X) ||
				    sym.st_value < phdrs[p].p_vaddr ||
				    sym.st_value >= phdrs[p].p_vaddr + phdrs[p].p_filesz)
					continue;
				if (n == cap)
					offs = realloc(offs, (cap *= 2) * sizeof(*offs));
				offs[n] = sym.st_value - phdrs[p].p_vaddr + phdrs[p].p_offset;
				name = elf_strptr(elf, sh.sh_link, sym.st_name);
				for (int k = 0; name && k < n_leave && n_bad < 64; k++)
					if (!strcmp(name, leave_out[k]))
						bad[n_bad++] = offs[n];
				n++;
				break;
			}
		}
	}
	elf_end(elf);
	close(fd);
	qsort(offs, n, sizeof(*offs), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		int drop = i && offs[i] == offs[i - 1];

		for (size_t k = 0; k < n_bad && !drop; k++)
			drop = offs[i] == bad[k];
		if (!drop)
			offs[kept++] = offs[i];
	}
	*out = offs;
	return kept;
}

static int uprobe_multi_link(int prog_fd, const char *path, const uint64_t *offsets, uint32_t cnt)
{
	struct {
		uint32_t prog_fd, target_fd, attach_type, flags;
		uint64_t path, offsets, ref_ctr_offsets, cookies;
		uint32_t cnt, multi_flags, pid, pad;
	} attr;

	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = prog_fd;
	attr.attach_type = BPF_TRACE_UPROBE_MULTI_ATTACH;
	attr.path = (uint64_t)(unsigned long)path;
	attr.offsets = (uint64_t)(unsigned long)offsets;
	attr.cnt = cnt;
	return syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	uint64_t *offsets;
	size_t n;
	int link;

	if (argc < 3) {
		fprintf(stderr, "usage: funccount_multi OBJ LIB [LEAVE_OUT...]\n");
		return 2;
	}
	signal(SIGINT, on_sigint);
	n = function_offsets(argv[2], argv + 3, argc - 3, &offsets);
	open_and_load(argv[1], &obj);
	prog = bpf_object__find_program_by_name(obj, "count_calls");
	if (!prog)
		die("count_calls", ENOENT);
	bpf_program__set_expected_attach_type(prog, BPF_TRACE_UPROBE_MULTI_ATTACH);
	load(obj);
	link = uprobe_multi_link(bpf_program__fd(prog), argv[2], offsets, n);
	if (link < 0)
		die("BPF_LINK_CREATE uprobe.multi", errno);
	printf("Tracing %zu functions\n", n);
	fflush(stdout);
	while (!stop)
		pause();
	close(link);
	bpf_object__close(obj);
	free(offsets);
	return 0;
}
