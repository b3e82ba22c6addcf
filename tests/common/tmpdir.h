/*
 * tmpdir.h — a fresh directory for a unit test and its removal, for the
 * tests that open engines on disk (include after <cmocka.h>).
 * make_dir("engine") -> "/tmp/strata-test-engine-XXXXXX" (the caller frees
 * the string); rm_rf(path) removes it and everything in it.
 */
#ifndef STRATA_TEST_TMPDIR_H
#define STRATA_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline char *make_dir_tagged(const char *tag)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/strata-test-%s-XXXXXX", tag);
    char *d = strdup(tmpl);
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static inline void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

#endif
