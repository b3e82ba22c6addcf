/*
 * Crash test: a child process appends in `every_write` mode (with a tiny
 * memtable so flushes and compactions run in the background while it
 * writes) and reports each sample whose engine_write returned 0 on a pipe;
 * the parent SIGKILLs it at a random point, reopens the data dir and checks
 * that every acknowledged sample is there with its exact value. Repeated
 * for KILLS iterations on the same data dir (200, scaled by
 * STRATA_TEST_SCALE), each killing the child after a random number of acks.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "st_err.h"

#define NFIXED 16
#define MAX_ACKS (1u << 20)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void opts(engine_opts_t *o)
{
    engine_opts_default(o);
    o->wal_durability = ENGINE_WAL_EVERY_WRITE;
    o->partition_ms = 20000;
    o->memtable_max_bytes = 48 << 10;
    o->memtable_max_age_ms = 50;
}

/* Series of sample `seq`: one of NFIXED, or (every 7th) a brand-new series. */
static void labels_for(uint64_t seq, st_label_t *l, char *buf)
{
    l[0] = (st_label_t){"__name__", "crash", 8, 5};
    if (seq % 7 == 0)
        snprintf(buf, 32, "new_%llu", (unsigned long long)seq);
    else
        snprintf(buf, 32, "s%llu", (unsigned long long)(seq % NFIXED));
    l[1] = (st_label_t){"s", buf, 1, (uint32_t)strlen(buf)};
}

static double value_for(uint64_t seq)
{
    return (double)seq * 1.25 + 0.1; /* not a small decimal: exercises XOR coding too */
}

static void child(const char *dir, uint64_t base, int fd)
{
    engine_opts_t o;
    opts(&o);
    engine_t *e;
    if (engine_open(dir, &o, &e) != 0)
        _exit(2);
    for (uint64_t seq = base;; seq++) {
        st_label_t l[2];
        char buf[32];
        labels_for(seq, l, buf);
        int64_t t = (int64_t)seq;
        double v = value_for(seq);
        engine_series_batch_t b = {l, 2, &t, &v, 1};
        if (engine_write(e, &b, 1, NULL) != 0)
            _exit(3);
        if (write(fd, &seq, sizeof seq) != sizeof seq)
            _exit(4);
    }
}

static void test_sigkill_loses_no_acked_write(void **state)
{
    const char *s = getenv("STRATA_TEST_SCALE");
    double scale = s ? atof(s) : 1.0;
    int kills = (int)(200 * (scale > 0 ? scale : 1.0));
    if (kills < 10)
        kills = 10;
    char dir[] = "/tmp/strata-test-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t *acked = malloc(MAX_ACKS * sizeof *acked);
    size_t nacked = 0;
    uint64_t total_checked = 0;
    for (int it = 0; it < kills; it++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        uint64_t base = (uint64_t)it * 100000 + 1;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(dir, base, p[1]);
        }
        close(p[1]);
        /* wait for a random number of acks (bounded by a 10 s deadline), then kill */
        size_t want = 1 + rnd() % 120, got = 0;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (got < want) {
            struct pollfd pfd = {p[0], POLLIN, 0};
            int pr = poll(&pfd, 1, 100);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec > 10)
                break;
            if (pr <= 0)
                continue;
            uint64_t seq;
            ssize_t r = read(p[0], &seq, sizeof seq);
            if (r != sizeof seq)
                break;
            assert_true(nacked < MAX_ACKS);
            acked[nacked++] = seq;
            got++;
        }
        if (rnd() % 2) /* sometimes let it run a little past the last ack we read */
            usleep((useconds_t)(rnd() % 3000));
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("child exited on its own (status %d) at iteration %d", status, it);
        /* acks written before the kill are still in the pipe */
        uint64_t seq;
        while (read(p[0], &seq, sizeof seq) == sizeof seq) {
            assert_true(nacked < MAX_ACKS);
            acked[nacked++] = seq;
        }
        close(p[0]);
        assert_true(got > 0);

        /* verify every acked sample */
        engine_opts_t o;
        opts(&o);
        o.background = 0;
        engine_t *e;
        int rc = engine_open(dir, &o, &e);
        if (rc)
            fail_msg("reopen after kill %d: %s: %s", it, st_strerror(rc), engine_last_error());
        st_matcher_t m = {ST_MATCH_EQ, "__name__", "crash"};
        engine_iter_t *q;
        assert_int_equal(engine_query(e, &m, 1, INT64_MIN, INT64_MAX, &q), 0);
        /* present[seq] = value matched */
        uint64_t maxseq = base + 200000;
        uint8_t *present = calloc(maxseq, 1);
        const st_label_t *l;
        size_t nl, n;
        const int64_t *ts;
        const double *v;
        while ((rc = engine_iter_next(q, &l, &nl, &ts, &v, &n)) == 1) {
            for (size_t i = 0; i < n; i++) {
                uint64_t sq = (uint64_t)ts[i];
                assert_true(sq < maxseq);
                double want_v = value_for(sq);
                if (memcmp(&v[i], &want_v, 8) != 0)
                    fail_msg("seq %llu: wrong value", (unsigned long long)sq);
                present[sq] = 1;
            }
        }
        assert_int_equal(rc, 0);
        engine_iter_destroy(q);
        for (size_t i = 0; i < nacked; i++)
            if (!present[acked[i]])
                fail_msg("kill %d: acknowledged sample %llu lost", it,
                         (unsigned long long)acked[i]);
        total_checked += nacked;
        free(present);
        assert_int_equal(engine_close(e), 0);
    }
    printf("crash test: %d kills, %zu acknowledged samples, all present after every kill "
           "(%llu checks)\n",
           kills, nacked, (unsigned long long)total_checked);
    free(acked);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_loses_no_acked_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
