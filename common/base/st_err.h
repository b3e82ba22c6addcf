/*
 * st_err — one table of error codes for all of Strata.
 *
 * Every function that can fail returns 0 (or a positive count) on success and
 * a negative ST_E* code on failure. Callers decide what to log; modules never
 * print. st_strerror() turns a code into a stable, human sentence.
 */
#ifndef ST_ERR_H
#define ST_ERR_H

#define ST_ERRNO_MAP(X)                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "I/O error")                                                                        \
    X(ECORRUPT, -4, "data is corrupt (bad checksum or format)")                                    \
    X(EAGAIN, -5, "need more bytes")                                                               \
    X(ELIMIT, -6, "limit exceeded")                                                                \
    X(ENOENT, -7, "not found")                                                                     \
    X(EEXIST, -8, "already exists")                                                                \
    X(EVERSION, -9, "unsupported format version")                                                  \
    X(ECLOSED, -10, "closed")                                                                      \
    X(ETIMEDOUT, -11, "timed out")                                                                 \
    X(EPROTO, -12, "protocol error")                                                               \
    X(EPARSE, -13, "parse error")                                                                  \
    X(EUNAVAIL, -14, "unavailable")                                                                \
    X(EBUSY, -15, "busy")                                                                          \
    X(ECONFIG, -16, "invalid configuration")                                                       \
    X(ENOREF, -17, "unknown series reference")

enum {
    ST_OK = 0,
#define ST_ERR_ENUM(name, code, text) ST_##name = code,
    ST_ERRNO_MAP(ST_ERR_ENUM)
#undef ST_ERR_ENUM
};

/* A stable description of an ST_E* code (never NULL). */
const char *st_strerror(int err);
/* The symbolic name ("ECORRUPT") of an ST_E* code (never NULL). */
const char *st_errname(int err);

#endif
