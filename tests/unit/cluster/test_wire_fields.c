/*
 * Unit test for wire_fields.h: every named field number equals the number
 * protobuf-c generated from proto/strata.proto, and every field of every
 * listed message has a name, so the names cannot drift from the .proto.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "strata.pb-c.h"
#include "wire_fields.h"

typedef struct entry {
    const ProtobufCMessageDescriptor *desc;
    const char *name; /* WIRE_... */
    unsigned num;
    const char *field;
} entry_t;

#define ENTRY(msg, name, num, field) {&strata__##msg##__descriptor, #name, name, field},
static const entry_t entries[] = {WIRE_FIELDS(ENTRY)};
#undef ENTRY
#define NENTRIES (sizeof entries / sizeof entries[0])

static void test_numbers_match_descriptors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NENTRIES; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(entries[i].desc, entries[i].field);
        if (!f || f->id != entries[i].num) {
            print_error("%s = %u: %s.%s is %d in strata.proto\n", entries[i].name, entries[i].num,
                        entries[i].desc->name, entries[i].field, f ? (int)f->id : -1);
            fail();
        }
    }
}

static void test_every_field_named(void **state)
{
    (void)state;
    for (size_t i = 0; i < NENTRIES; i++) {
        if (i > 0 && entries[i - 1].desc == entries[i].desc)
            continue; /* count each message once, at its first entry */
        size_t n = 0;
        for (size_t j = 0; j < NENTRIES; j++)
            n += entries[j].desc == entries[i].desc;
        if (n != entries[i].desc->n_fields) {
            print_error("%s: %zu fields named, %u in strata.proto\n", entries[i].desc->name, n,
                        entries[i].desc->n_fields);
            fail();
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_match_descriptors),
        cmocka_unit_test(test_every_field_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
