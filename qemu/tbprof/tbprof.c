/* qemu/tbprof: a guest instruction profile under QEMU TCG (plugin API version 1, as in QEMU 7.2).
 *
 * Counts how often every translation block runs, with an inline add (no callback per block).
 * A control file (argument ctl=<path>, default /tmp/qplug.ctl) is polled every 50 ms; writing
 * "reset" zeroes the counts, "dump <path>" writes one line per block that ran: guest address
 * (hex), instructions in the block, executions. qemu/tbprof/report.py turns a dump into
 * instructions per function per frame. See qemu/tbprof/README.md.
 *
 * The declarations below are the few plugin entry points this file uses, written out here so
 * that it builds without QEMU's source tree. */
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

typedef uint64_t plugin_id;
struct plugin_tb;
typedef struct { const char *target_name; struct { int min, cur; } version; bool system_emulation;
                 union { struct { int smp_vcpus, max_vcpus; } system; }; } plugin_info;
typedef void (*tb_trans_cb)(plugin_id, struct plugin_tb *);
void qemu_plugin_register_vcpu_tb_trans_cb(plugin_id, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct plugin_tb *, int op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct plugin_tb *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

struct block { uint64_t vaddr, insns, runs; };
#define MAX_BLOCKS (1 << 20)
static struct block *blocks;
static size_t nblocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *ctl_path;

static void on_translate(plugin_id id, struct plugin_tb *tb) {
    (void)id;
    pthread_mutex_lock(&lock);
    if (nblocks < MAX_BLOCKS) {
        struct block *b = &blocks[nblocks++];
        b->vaddr = qemu_plugin_tb_vaddr(tb);
        b->insns = qemu_plugin_tb_n_insns(tb);
        b->runs = 0;
        qemu_plugin_register_vcpu_tb_exec_inline(tb, 0, &b->runs, 1);
    }
    pthread_mutex_unlock(&lock);
}

static void *control(void *arg) {
    (void)arg;
    char cmd[512];
    for (;;) {
        usleep(50000);
        FILE *f = fopen(ctl_path, "r");
        if (!f) continue;
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        unlink(ctl_path);
        cmd[n] = 0;
        cmd[strcspn(cmd, "\n")] = 0;
        pthread_mutex_lock(&lock);
        if (strcmp(cmd, "reset") == 0) {
            for (size_t i = 0; i < nblocks; i++) blocks[i].runs = 0;
        } else if (strncmp(cmd, "dump ", 5) == 0) {
            FILE *out = fopen(cmd + 5, "w");
            if (out) {
                for (size_t i = 0; i < nblocks; i++)
                    if (blocks[i].runs)
                        fprintf(out, "%llx %llu %llu\n", (unsigned long long)blocks[i].vaddr,
                                (unsigned long long)blocks[i].insns, (unsigned long long)blocks[i].runs);
                fclose(out);
            }
        }
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

__attribute__((visibility("default")))
int qemu_plugin_install(plugin_id id, const plugin_info *info, int argc, char **argv) {
    (void)info;
    ctl_path = "/tmp/qplug.ctl";
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "ctl=", 4) == 0) ctl_path = argv[i] + 4;
    blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    if (!blocks) return 1;
    pthread_t t;
    pthread_create(&t, NULL, control, NULL);
    pthread_detach(t);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    return 0;
}
