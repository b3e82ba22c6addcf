/*
 * node_wire — the protobuf field numbers of proto/strata.proto that the
 * node's hand-written wire code reads and writes (node_write.c decodes a
 * WriteRequest zero-copy; node_rpc.c encodes ReadResponse and StringList
 * straight into the reply buffer). Local to the node for now; the same
 * numbers may get names in common/cluster/wire.h, then these go.
 */
#ifndef NODE_WIRE_H
#define NODE_WIRE_H

enum node_wire_field {
    /* message WriteRequest (a shard's batch) */
    NODE_WIRE_WRITE_SHARD = 1,  /* uint32 shard */
    NODE_WIRE_WRITE_SERIES = 2, /* repeated SeriesSamples series */
    /* message ReadResponse (EXPORT / SERIES pages) */
    NODE_WIRE_READ_SERIES = 1,     /* repeated SeriesSamples series */
    NODE_WIRE_READ_DONE = 2,       /* bool done */
    NODE_WIRE_READ_NEXT_SHARD = 3, /* uint32 next_shard */
    NODE_WIRE_READ_NEXT_POS = 4,   /* uint64 next_pos */
    /* message StringList (LABEL_NAMES / LABEL_VALUES) */
    NODE_WIRE_STRINGS_VALUES = 1, /* repeated bytes values */
};

#endif
