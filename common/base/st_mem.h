/*
 * st_mem — the allocator settings of the daemons (strata-node,
 * strata-router), applied once at start, before any thread exists.
 *
 * Why: the write and query paths hand buffers of 0.1-2 MiB from one
 * stage to the next (RPC frames, batches, decoded blocks). With glibc's
 * defaults each such buffer is a fresh mmap or a heap top that is trimmed
 * again as soon as it is freed, so every write pays page faults on memory
 * it just gave back; on a 2-core box that was a third of the CPU of a
 * replicated ingest. The settings keep that memory in the allocator:
 *   - mmap only for blocks of 4 MiB and more (fixed: glibc's sliding
 *     threshold is off),
 *   - give a heap top back only past 32 MiB free, grow it 4 MiB at a time,
 *   - one arena: all threads share it instead of each keeping its own
 *     free memory (which bounds what the first two settings keep). Memory
 *     here often changes threads (a receive buffer filled on the loop is
 *     freed by a pool thread, a head's arrays grown by writers are freed
 *     by the flush); with two arenas those frees waited on the other
 *     arena's lock: one arena measured +2.6% replicated ingest, -1.4% node
 *     CPU and ~6% less RSS (tests/bench/ingest_ab.py, 4000 hosts, RF=3).
 * An operator's GLIBC_TUNABLES naming any glibc.malloc key wins: then
 * nothing is changed.
 */
#ifndef ST_MEM_H
#define ST_MEM_H

/* Applies the settings above (once; later calls do nothing). */
void st_mem_tune(void);
/*
 * Give the allocator's free memory back to the OS (malloc_trim), in a
 * process that called st_mem_tune (a daemon); nothing elsewhere (an
 * embedder keeps its own policy). For quiet moments: after a burst of
 * writes has been flushed, the heads it filled are free, and the settings
 * above would otherwise keep up to 32 MiB a heap plus every hole below
 * its top resident while the node only answers queries.
 */
void st_mem_release(void);

#endif
