/*
 * Prints the layout a real C compiler gives the tmem ABI structs, one "name offset size" line
 * per field and one "name 0 size" line per struct, for test/abi/c-layout.test.ts to compare
 * with src/abi/layout.ts. The structs follow spec §2.6-2.8 (x86_64 Xen public/tmem.h, v1 and
 * the v0 that preceded it), with uint64_t standing in for xen_pfn_t and the guest handle, as
 * on x86_64. It prints facts only; every judgement is made by the test.
 *
 * Build and run by hand: cc -std=c99 -Wall -Wextra -o /tmp/abi-layout tools/abi-layout.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct tmem_op_v1 {
    uint32_t cmd;
    int32_t pool_id;
    union {
        struct {
            uint64_t uuid[2];
            uint32_t flags;
            uint32_t arg1;
        } creat;
        struct {
            uint32_t subop;
            uint32_t cli_id;
            uint32_t arg1;
            uint32_t arg2;
            uint64_t oid[3];
            uint64_t buf;
        } ctrl;
        struct {
            uint64_t oid[3];
            uint32_t index;
            uint32_t tmem_offset;
            uint32_t pfn_offset;
            uint32_t len;
            uint64_t cmfn;
        } gen;
    } u;
};

struct tmem_op_v0 {
    uint32_t cmd;
    int32_t pool_id;
    union {
        struct {
            uint64_t uuid[2];
            uint32_t flags;
            uint32_t arg1;
        } creat;
        struct {
            uint32_t subop;
            uint32_t cli_id;
            uint32_t arg1;
            uint32_t arg2;
            uint64_t arg3;
            uint64_t buf;
        } ctrl;
        struct {
            uint64_t object;
            uint32_t index;
            uint32_t tmem_offset;
            uint32_t pfn_offset;
            uint32_t len;
            uint64_t cmfn;
        } gen;
    } u;
};

struct tmem_handle_v1 {
    uint32_t pool_id;
    uint32_t index;
    uint64_t oid[3];
};

struct tmem_handle_v0 {
    uint32_t pool_id;
    uint32_t index;
    uint64_t oid;
};

#define FIELD(tag, type, member) \
    printf("%s.%s %zu %zu\n", tag, #member, offsetof(struct type, member), \
           sizeof(((struct type *)0)->member))
#define SIZE(tag, type) printf("%s 0 %zu\n", tag, sizeof(struct type))

int main(void)
{
    SIZE("op_v1", tmem_op_v1);
    FIELD("op_v1", tmem_op_v1, cmd);
    FIELD("op_v1", tmem_op_v1, pool_id);
    FIELD("op_v1", tmem_op_v1, u);
    FIELD("op_v1", tmem_op_v1, u.creat.uuid);
    FIELD("op_v1", tmem_op_v1, u.creat.flags);
    FIELD("op_v1", tmem_op_v1, u.creat.arg1);
    FIELD("op_v1", tmem_op_v1, u.ctrl.subop);
    FIELD("op_v1", tmem_op_v1, u.ctrl.cli_id);
    FIELD("op_v1", tmem_op_v1, u.ctrl.arg1);
    FIELD("op_v1", tmem_op_v1, u.ctrl.arg2);
    FIELD("op_v1", tmem_op_v1, u.ctrl.oid);
    FIELD("op_v1", tmem_op_v1, u.ctrl.buf);
    FIELD("op_v1", tmem_op_v1, u.gen.oid);
    FIELD("op_v1", tmem_op_v1, u.gen.index);
    FIELD("op_v1", tmem_op_v1, u.gen.tmem_offset);
    FIELD("op_v1", tmem_op_v1, u.gen.pfn_offset);
    FIELD("op_v1", tmem_op_v1, u.gen.len);
    FIELD("op_v1", tmem_op_v1, u.gen.cmfn);

    SIZE("op_v0", tmem_op_v0);
    FIELD("op_v0", tmem_op_v0, cmd);
    FIELD("op_v0", tmem_op_v0, pool_id);
    FIELD("op_v0", tmem_op_v0, u);
    FIELD("op_v0", tmem_op_v0, u.creat.uuid);
    FIELD("op_v0", tmem_op_v0, u.creat.flags);
    FIELD("op_v0", tmem_op_v0, u.creat.arg1);
    FIELD("op_v0", tmem_op_v0, u.ctrl.subop);
    FIELD("op_v0", tmem_op_v0, u.ctrl.cli_id);
    FIELD("op_v0", tmem_op_v0, u.ctrl.arg1);
    FIELD("op_v0", tmem_op_v0, u.ctrl.arg2);
    FIELD("op_v0", tmem_op_v0, u.ctrl.arg3);
    FIELD("op_v0", tmem_op_v0, u.ctrl.buf);
    FIELD("op_v0", tmem_op_v0, u.gen.object);
    FIELD("op_v0", tmem_op_v0, u.gen.index);
    FIELD("op_v0", tmem_op_v0, u.gen.tmem_offset);
    FIELD("op_v0", tmem_op_v0, u.gen.pfn_offset);
    FIELD("op_v0", tmem_op_v0, u.gen.len);
    FIELD("op_v0", tmem_op_v0, u.gen.cmfn);

    SIZE("handle_v1", tmem_handle_v1);
    FIELD("handle_v1", tmem_handle_v1, pool_id);
    FIELD("handle_v1", tmem_handle_v1, index);
    FIELD("handle_v1", tmem_handle_v1, oid);

    SIZE("handle_v0", tmem_handle_v0);
    FIELD("handle_v0", tmem_handle_v0, pool_id);
    FIELD("handle_v0", tmem_handle_v0, index);
    FIELD("handle_v0", tmem_handle_v0, oid);
    return 0;
}
