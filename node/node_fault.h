/*
 * node_fault — test-only fault injection for the replication fault tests
 * (tests/integration/test_faults.py). Never set in deploy/ or in
 * production: each knob makes the node lose or delay writes on purpose.
 *
 * Knobs are environment variables, read once by node_fault_init() when the
 * node starts (node_repl_create); a set knob is logged at warn level. Unset,
 * each hook is one load of a static and a branch.
 *
 *   STRATA_TEST_HINT_DELAY_MS=MS     a hint append for a replica that did not
 *                                    ack waits MS first (on its pool thread),
 *                                    so a kill -9 can land between the
 *                                    coordinator's answer and the append
 *   STRATA_TEST_FAIL_LOCAL_WRITE=N   the local copy of every Nth write this
 *                                    node coordinates fails (EIO, reported;
 *                                    nothing stored); forwards still go out
 *   STRATA_TEST_DROP_LOCAL_WRITE=N   the local copy of every Nth coordinated
 *                                    write is not stored but reported stored
 *                                    (a write the disk lost)
 */
#ifndef NODE_FAULT_H
#define NODE_FAULT_H

typedef enum { NODE_FAULT_NONE = 0, NODE_FAULT_FAIL, NODE_FAULT_DROP } node_fault_t;

/* Read the knobs from the environment (once; later calls do nothing). */
void node_fault_init(void);
/* Sleep STRATA_TEST_HINT_DELAY_MS (no-op when unset). */
void node_fault_hint_delay(void);
/* What happens to the local copy of the next coordinated write. */
node_fault_t node_fault_local_write(void);

#endif
