/*
 * st_hlc — hybrid logical clock (see st_hlc.h). The state is the last
 * version issued or observed; next() takes max(last + 1, now << 16) with a
 * compare-and-swap loop, so concurrent callers get distinct, increasing
 * versions. A wall clock behind `last` (a step back, or a faster peer)
 * only advances the counter, which carries into the millisecond bits when
 * it wraps: versions stay unique and ordered.
 */
#include "st_hlc.h"

void st_hlc_init(st_hlc_t *c)
{
    atomic_init(&c->last, 0);
}

uint64_t st_hlc_next(st_hlc_t *c, int64_t now_ms)
{
    uint64_t wall = now_ms > 0 ? st_hlc_make(now_ms, 0) : 0;
    uint64_t last = atomic_load(&c->last);
    for (;;) {
        uint64_t v = wall > last ? wall : last + 1;
        if (atomic_compare_exchange_weak(&c->last, &last, v))
            return v;
    }
}

void st_hlc_observe(st_hlc_t *c, uint64_t version)
{
    uint64_t last = atomic_load(&c->last);
    while (version > last && !atomic_compare_exchange_weak(&c->last, &last, version))
        ;
}
