/* st_mem — allocator settings of the daemons; see st_mem.h. */
#include "st_mem.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define ST_MEM_MMAP_MIN (4 << 20) /* blocks this large and more are mmapped */
#define ST_MEM_TRIM (32 << 20)    /* free heap top kept before it is returned */
#define ST_MEM_TOP_PAD (4 << 20)  /* a heap grows this much more than asked */
#define ST_MEM_ARENAS 1           /* one malloc arena for all threads */

static int tuned; /* st_mem_tune ran: a daemon */

void st_mem_release(void)
{
    if (__atomic_load_n(&tuned, __ATOMIC_RELAXED))
        malloc_trim(0);
}

void st_mem_tune(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    __atomic_store_n(&tuned, 1, __ATOMIC_RELAXED);
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc."))
        return; /* the operator's own settings */
    mallopt(M_MMAP_THRESHOLD, ST_MEM_MMAP_MIN);
    mallopt(M_TRIM_THRESHOLD, ST_MEM_TRIM);
    mallopt(M_TOP_PAD, ST_MEM_TOP_PAD);
    mallopt(M_ARENA_MAX, ST_MEM_ARENAS);
}
