/*
 * wire_fields — the field numbers of every message in proto/strata.proto,
 * by name, for the hand-written codec (wire, qreply, repl) and the node and
 * router code that reads or writes those messages field by field.
 *
 * One list, WIRE_FIELDS(X), gives each field as
 *   X(message in snake_case, WIRE_<MESSAGE>_<FIELD>, number, "field name")
 * and makes the enum below. tests/unit/cluster/test_wire_fields.c walks the
 * same list against protobuf-c's generated descriptors (strata.pb-c.h), so
 * a number or a field that drifts from the .proto fails the build's tests.
 * When strata.proto changes, change this list with it.
 */
#ifndef WIRE_FIELDS_H
#define WIRE_FIELDS_H

/* clang-format off */
#define WIRE_FIELDS(X) \
    /* message Label */ \
    X(label, WIRE_LABEL_NAME, 1, "name") \
    X(label, WIRE_LABEL_VALUE, 2, "value") \
    /* message SeriesSamples */ \
    X(series_samples, WIRE_SERIES_SAMPLES_LABELS, 1, "labels") \
    X(series_samples, WIRE_SERIES_SAMPLES_TIMESTAMPS, 2, "timestamps") \
    X(series_samples, WIRE_SERIES_SAMPLES_VALUES, 3, "values") \
    X(series_samples, WIRE_SERIES_SAMPLES_VERSIONS, 4, "versions") \
    X(series_samples, WIRE_SERIES_SAMPLES_REF, 5, "ref") \
    /* message Hello */ \
    X(hello, WIRE_HELLO_PROTOCOL_VERSION, 1, "protocol_version") \
    X(hello, WIRE_HELLO_CLUSTER_NAME, 2, "cluster_name") \
    X(hello, WIRE_HELLO_TOPOLOGY_FINGERPRINT, 3, "topology_fingerprint") \
    X(hello, WIRE_HELLO_NODE_ID, 4, "node_id") \
    /* message Error */ \
    X(error, WIRE_ERROR_CODE, 1, "code") \
    X(error, WIRE_ERROR_MESSAGE, 2, "message") \
    /* message WriteRequest */ \
    X(write_request, WIRE_WRITE_REQUEST_SHARD, 1, "shard") \
    X(write_request, WIRE_WRITE_REQUEST_SERIES, 2, "series") \
    X(write_request, WIRE_WRITE_REQUEST_DELETE, 3, "delete") \
    X(write_request, WIRE_WRITE_REQUEST_VERSION, 4, "version") \
    /* message WriteResponse */ \
    X(write_response, WIRE_WRITE_RESPONSE_SHARD, 1, "shard") \
    X(write_response, WIRE_WRITE_RESPONSE_STATUS, 2, "status") \
    X(write_response, WIRE_WRITE_RESPONSE_ERROR, 3, "error") \
    /* message Matcher */ \
    X(matcher, WIRE_MATCHER_TYPE, 1, "type") \
    X(matcher, WIRE_MATCHER_NAME, 2, "name") \
    X(matcher, WIRE_MATCHER_VALUE, 3, "value") \
    /* message ExportRequest */ \
    X(export_request, WIRE_EXPORT_REQUEST_SHARDS, 1, "shards") \
    X(export_request, WIRE_EXPORT_REQUEST_MATCHERS, 2, "matchers") \
    X(export_request, WIRE_EXPORT_REQUEST_START_MS, 3, "start_ms") \
    X(export_request, WIRE_EXPORT_REQUEST_END_MS, 4, "end_ms") \
    /* message ExportResponse */ \
    X(export_response, WIRE_EXPORT_RESPONSE_SERIES, 1, "series") \
    X(export_response, WIRE_EXPORT_RESPONSE_DONE, 2, "done") \
    /* message NodeWrite */ \
    X(node_write, WIRE_NODE_WRITE_SHARDS, 1, "shards") \
    X(node_write, WIRE_NODE_WRITE_CONSISTENCY, 2, "consistency") \
    X(node_write, WIRE_NODE_WRITE_FORWARDED, 3, "forwarded") \
    /* message ShardResult */ \
    X(shard_result, WIRE_SHARD_RESULT_SHARD, 1, "shard") \
    X(shard_result, WIRE_SHARD_RESULT_CODE, 2, "code") \
    X(shard_result, WIRE_SHARD_RESULT_ERROR, 3, "error") \
    X(shard_result, WIRE_SHARD_RESULT_SAMPLES, 4, "samples") \
    X(shard_result, WIRE_SHARD_RESULT_REFUSED_SAMPLES, 5, "refused_samples") \
    X(shard_result, WIRE_SHARD_RESULT_REFUSED_LIMIT, 6, "refused_limit") \
    X(shard_result, WIRE_SHARD_RESULT_REFUSED_LIMIT_VALUE, 7, "refused_limit_value") \
    X(shard_result, WIRE_SHARD_RESULT_REFUSED_REASON, 8, "refused_reason") \
    X(shard_result, WIRE_SHARD_RESULT_RETRY_AFTER_S, 9, "retry_after_s") \
    X(shard_result, WIRE_SHARD_RESULT_COORDINATOR_MISSED, 10, "coordinator_missed") \
    /* message NodeWriteResult */ \
    X(node_write_result, WIRE_NODE_WRITE_RESULT_RESULTS, 1, "results") \
    /* message ReadRequest */ \
    X(read_request, WIRE_READ_REQUEST_SHARDS, 1, "shards") \
    X(read_request, WIRE_READ_REQUEST_MATCHERS, 2, "matchers") \
    X(read_request, WIRE_READ_REQUEST_START_MS, 3, "start_ms") \
    X(read_request, WIRE_READ_REQUEST_END_MS, 4, "end_ms") \
    X(read_request, WIRE_READ_REQUEST_MAX_SAMPLES, 5, "max_samples") \
    X(read_request, WIRE_READ_REQUEST_MAX_SERIES, 6, "max_series") \
    X(read_request, WIRE_READ_REQUEST_CURSOR_SHARD, 7, "cursor_shard") \
    X(read_request, WIRE_READ_REQUEST_CURSOR_POS, 8, "cursor_pos") \
    X(read_request, WIRE_READ_REQUEST_LABEL_NAME, 9, "label_name") \
    X(read_request, WIRE_READ_REQUEST_TIMEOUT_MS, 10, "timeout_ms") \
    /* message ReadResponse */ \
    X(read_response, WIRE_READ_RESPONSE_SERIES, 1, "series") \
    X(read_response, WIRE_READ_RESPONSE_DONE, 2, "done") \
    X(read_response, WIRE_READ_RESPONSE_NEXT_SHARD, 3, "next_shard") \
    X(read_response, WIRE_READ_RESPONSE_NEXT_POS, 4, "next_pos") \
    /* message StringList */ \
    X(string_list, WIRE_STRING_LIST_VALUES, 1, "values") \
    /* message NodeStats */ \
    X(node_stats, WIRE_NODE_STATS_NODE_ID, 1, "node_id") \
    X(node_stats, WIRE_NODE_STATS_SERIES, 2, "series") \
    X(node_stats, WIRE_NODE_STATS_HEAD_SAMPLES, 3, "head_samples") \
    X(node_stats, WIRE_NODE_STATS_DISK_BYTES, 4, "disk_bytes") \
    X(node_stats, WIRE_NODE_STATS_SAMPLES_WRITTEN, 5, "samples_written") \
    X(node_stats, WIRE_NODE_STATS_SHARDS, 6, "shards") \
    X(node_stats, WIRE_NODE_STATS_HINTS, 7, "hints") \
    X(node_stats, WIRE_NODE_STATS_PEERS, 8, "peers") \
    X(node_stats, WIRE_NODE_STATS_DEGRADED, 9, "degraded") \
    X(node_stats, WIRE_NODE_STATS_DEGRADED_REASON, 10, "degraded_reason") \
    X(node_stats, WIRE_NODE_STATS_REBUILDING, 20, "rebuilding") \
    X(node_stats, WIRE_NODE_STATS_REPAIR, 21, "repair") \
    /* message PeerHints */ \
    X(peer_hints, WIRE_PEER_HINTS_PEER, 1, "peer") \
    X(peer_hints, WIRE_PEER_HINTS_PENDING_RECORDS, 2, "pending_records") \
    X(peer_hints, WIRE_PEER_HINTS_PENDING_BYTES, 3, "pending_bytes") \
    X(peer_hints, WIRE_PEER_HINTS_OLDEST_TS, 4, "oldest_ts") \
    X(peer_hints, WIRE_PEER_HINTS_DROPPED_RECORDS, 5, "dropped_records") \
    /* message PeerState */ \
    X(peer_state, WIRE_PEER_STATE_PEER, 1, "peer") \
    X(peer_state, WIRE_PEER_STATE_UP, 2, "up") \
    /* message QueryRequest */ \
    X(query_request, WIRE_QUERY_REQUEST_SHARDS, 1, "shards") \
    X(query_request, WIRE_QUERY_REQUEST_EXPR, 2, "expr") \
    X(query_request, WIRE_QUERY_REQUEST_START_MS, 3, "start_ms") \
    X(query_request, WIRE_QUERY_REQUEST_STEP_MS, 4, "step_ms") \
    X(query_request, WIRE_QUERY_REQUEST_STEPS, 5, "steps") \
    X(query_request, WIRE_QUERY_REQUEST_QUERY_START_MS, 6, "query_start_ms") \
    X(query_request, WIRE_QUERY_REQUEST_QUERY_END_MS, 7, "query_end_ms") \
    X(query_request, WIRE_QUERY_REQUEST_LOOKBACK_MS, 8, "lookback_ms") \
    X(query_request, WIRE_QUERY_REQUEST_MAX_SAMPLES, 9, "max_samples") \
    X(query_request, WIRE_QUERY_REQUEST_TIMEOUT_MS, 10, "timeout_ms") \
    X(query_request, WIRE_QUERY_REQUEST_MAX_SERIES, 11, "max_series") \
    X(query_request, WIRE_QUERY_REQUEST_MAX_BYTES, 12, "max_bytes") \
    X(query_request, WIRE_QUERY_REQUEST_QUERY_ID, 13, "query_id") \
    /* message CancelRequest */ \
    X(cancel_request, WIRE_CANCEL_REQUEST_QUERY_ID, 1, "query_id") \
    /* message StepSeries */ \
    X(step_series, WIRE_STEP_SERIES_LABELS, 1, "labels") \
    X(step_series, WIRE_STEP_SERIES_PRESENT, 2, "present") \
    X(step_series, WIRE_STEP_SERIES_VALUES, 3, "values") \
    /* message QueryResponse */ \
    X(query_response, WIRE_QUERY_RESPONSE_SERIES, 1, "series") \
    X(query_response, WIRE_QUERY_RESPONSE_SAMPLES, 2, "samples") \
    X(query_response, WIRE_QUERY_RESPONSE_POINTS, 3, "points") \
    X(query_response, WIRE_QUERY_RESPONSE_SELECTED_SERIES, 4, "selected_series") \
    X(query_response, WIRE_QUERY_RESPONSE_RESOLUTION_MS, 5, "resolution_ms") \
    X(query_response, WIRE_QUERY_RESPONSE_AVG_SUMS, 6, "avg_sums") \
    /* message TagSetStats */ \
    X(tag_set_stats, WIRE_TAG_SET_STATS_LABELS, 1, "labels") \
    X(tag_set_stats, WIRE_TAG_SET_STATS_COUNT, 2, "count") \
    X(tag_set_stats, WIRE_TAG_SET_STATS_HASH, 3, "hash") \
    X(tag_set_stats, WIRE_TAG_SET_STATS_MIN_MS, 4, "min_ms") \
    X(tag_set_stats, WIRE_TAG_SET_STATS_MAX_MS, 5, "max_ms") \
    X(tag_set_stats, WIRE_TAG_SET_STATS_DIFFER, 6, "differ") \
    /* message RowStatsResponse */ \
    X(row_stats_response, WIRE_ROW_STATS_RESPONSE_SETS, 1, "sets") \
    X(row_stats_response, WIRE_ROW_STATS_RESPONSE_METRICS, 2, "metrics") \
    X(row_stats_response, WIRE_ROW_STATS_RESPONSE_RAW, 3, "raw")

#define WIRE_FIELD_ENUM_(msg, name, num, field) name = num,
enum wire_field_num { WIRE_FIELDS(WIRE_FIELD_ENUM_) };
#undef WIRE_FIELD_ENUM_
/* clang-format on */

#endif
