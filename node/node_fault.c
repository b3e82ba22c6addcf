/*
 * node_fault — test-only fault knobs (see node_fault.h). The counters are
 * atomics: local writes run on several pool threads at once.
 */
#include "node_fault.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "st_log.h"

static unsigned long hint_delay_ms, fail_every, drop_every;
static atomic_ulong coordinated;
static atomic_int inited;

static unsigned long knob(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end) {
        st_warn("test fault knob ignored: not a number", "knob=%s value=\"%s\"", name, s);
        return 0;
    }
    if (v)
        st_warn("TEST FAULT KNOB SET: this node loses or delays writes on purpose",
                "knob=%s value=%lu", name, v);
    return v;
}

void node_fault_init(void)
{
    if (atomic_exchange(&inited, 1))
        return;
    hint_delay_ms = knob("STRATA_TEST_HINT_DELAY_MS");
    fail_every = knob("STRATA_TEST_FAIL_LOCAL_WRITE");
    drop_every = knob("STRATA_TEST_DROP_LOCAL_WRITE");
}

void node_fault_hint_delay(void)
{
    if (!hint_delay_ms)
        return;
    struct timespec ts = {(time_t)(hint_delay_ms / 1000), (long)(hint_delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

node_fault_t node_fault_local_write(void)
{
    if (!fail_every && !drop_every)
        return NODE_FAULT_NONE;
    unsigned long k = atomic_fetch_add(&coordinated, 1) + 1;
    if (fail_every && k % fail_every == 0)
        return NODE_FAULT_FAIL;
    if (drop_every && k % drop_every == 0)
        return NODE_FAULT_DROP;
    return NODE_FAULT_NONE;
}
