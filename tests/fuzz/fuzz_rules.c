/*
 * fuzz_rules — the compaction rule set decoder (common/cluster/rules.c) on
 * hostile bytes. Byte 0 odd: the input is taken as the body of a set and
 * given a valid header and CRC, so the rule parsing itself is reached.
 * Whatever decodes must encode again to a set that decodes the same, and
 * every rule must compile and match/derive a destination without harm
 * (a retention entry: refused by rule_compile, found by its metric).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_rules: check failed: %s (line %d)\n", #c, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_set(const uint8_t *p, size_t n)
{
    rules_t s;
    char err[256];
    if (rules_decode(p, n, &s, err, sizeof err) != 0) {
        rules_free(&s);
        return;
    }
    CHECK(s.n <= RULES_MAX);
    st_buf_t b;
    st_buf_init(&b);
    CHECK(rules_encode(&s, &b) == 0);
    rules_t u;
    CHECK(rules_decode(b.data, b.len, &u, err, sizeof err) == 0);
    CHECK(u.n == s.n && u.version == s.version);
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}};
    for (size_t i = 0; i < s.n; i++) {
        CHECK(strcmp(u.v[i].source, s.v[i].source) == 0 && u.v[i].id == s.v[i].id);
        rule_compiled_t *c;
        if (rule_is_retention(&s.v[i])) { /* a key's retention: never compiled */
            CHECK(s.v[i].bucket_ms > 0 && !s.v[i].dest[0] && s.v[i].source[0]);
            CHECK(rules_find_retention(&s, s.v[i].source) == (long)i);
            CHECK(rule_compile(&s.v[i], &c, err, sizeof err) == ST_EINVAL);
            continue;
        }
        CHECK(rule_compile(&s.v[i], &c, err, sizeof err) == 0);
        st_label_t d[SELECTOR_MAX_MATCHERS + 2];
        (void)rule_compiled_match(c, l, 2);
        (void)rule_compiled_dest(c, l, 2, d, sizeof d / sizeof d[0]);
        rule_compiled_free(c);
    }
    rules_free(&u);
    rules_free(&s);
    st_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (!(data[0] & 1)) {
        check_set(data + 1, size - 1);
        return 0;
    }
    if ((data[0] & 3) == 3 && size > 2) { /* a retention entry named by the input */
        size_t l = strnlen((const char *)data + 2, size - 2);
        char *name = malloc(l + 1);
        if (!name)
            return 0;
        memcpy(name, data + 2, l);
        name[l] = '\0';
        rules_t set;
        rules_init(&set);
        rule_t ru = {0, 0, RULE_FLAG_RETENTION, (int64_t)data[1] * 1000, 0, 0, name, ""};
        char err[256];
        st_buf_t b;
        st_buf_init(&b);
        if (rules_add(&set, &ru, NULL, err, sizeof err) == 0) {
            CHECK(rules_add(&set, &ru, NULL, err, sizeof err) == ST_EEXIST);
            CHECK(rules_encode(&set, &b) == 0);
            check_set(b.data, b.len);
        }
        st_buf_deinit(&b);
        rules_free(&set);
        free(name);
        return 0;
    }
    /* a valid frame around the body: magic, format, version, count */
    st_buf_t b;
    st_buf_init(&b);
    uint32_t count = size > 1 ? data[1] % 4 : 0;
    if (st_buf_append(&b, "STRR", 4) || st_buf_put_u32le(&b, 1) || st_buf_put_u64le(&b, 7) ||
        st_buf_put_u32le(&b, count) ||
        st_buf_append(&b, data + (size > 1 ? 2 : 1), size > 1 ? size - 2 : 0) ||
        st_buf_put_u32le(&b, st_crc32c(0, b.data, b.len))) {
        st_buf_deinit(&b);
        return 0;
    }
    check_set(b.data, b.len);
    st_buf_deinit(&b);
    return 0;
}
