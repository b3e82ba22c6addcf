/* engine — placeholder; the implementation lands with the engine modules. */
#include "engine.h"

void engine_opts_default(engine_opts_t *o)
{
    o->wal_durability = ENGINE_WAL_PERIODIC;
    o->wal_sync_interval_ms = 100;
    o->partition_ms = 86400000;
    o->retention_ms = 0;
    o->memtable_max_bytes = 64u << 20;
    o->memtable_max_age_ms = 60000;
    o->background = 1;
}
