/*
 * st_log — logfmt logging to stderr.
 *
 *   ts=2026-11-21T19:50:45.123Z level=info msg="segment written" path=... bytes=123
 *
 * The level is checked before anything is formatted. Keys and values after
 * the message are a printf format the caller writes in logfmt itself
 * ("path=%s bytes=%zu"); st_log_quote() helps with values that may hold
 * spaces or quotes. Thread-safe: one write(2) per line.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

enum { ST_LOG_DEBUG = 0, ST_LOG_INFO = 1, ST_LOG_WARN = 2, ST_LOG_ERROR = 3, ST_LOG_OFF = 4 };

extern int st_log_level;

void st_log_set_level(int level);
/* Parse "debug|info|warn|error|off"; returns -1 if unknown. */
int st_log_parse_level(const char *s);
void st_log_write(int level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

#define st_log(level, msg, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= st_log_level)                                                               \
            st_log_write((level), (msg), __VA_ARGS__);                                             \
    } while (0)
#define st_debug(msg, ...) st_log(ST_LOG_DEBUG, msg, __VA_ARGS__)
#define st_info(msg, ...) st_log(ST_LOG_INFO, msg, __VA_ARGS__)
#define st_warn(msg, ...) st_log(ST_LOG_WARN, msg, __VA_ARGS__)
#define st_error(msg, ...) st_log(ST_LOG_ERROR, msg, __VA_ARGS__)

#endif
