/*
 * readopt — the options every read takes, parsed from their text (the
 * HTTP layer, or any other front door, hands over the raw values), free of
 * sockets so it can be unit-tested.
 *
 *   read_consistency=one|quorum (default from cluster.ini) -> replicas per
 *   shard: 1, or floor(RF/2)+1;
 *   partial_response=1|true -> missing shards allowed;
 *   durations ("15s", "1m30s", "250ms", or float seconds) -> ms.
 */
#ifndef READOPT_H
#define READOPT_H

#include <stddef.h>
#include <stdint.h>

#include "topo.h"

/* consistency / partial: the parameters' values, NULL when absent. Sets
 * *need and *partial_out; returns 0, or -1 with a 400 message in msg. */
int readopt_parse(const topo_t *t, const char *consistency, const char *partial, int *need,
                  int *partial_out, char *msg, size_t msglen);
/* A Prometheus duration or float seconds -> ms; -1 if invalid. */
int64_t readopt_duration_ms(const char *s);

#endif
