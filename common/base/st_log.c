/* st_log — logfmt writer; see st_log.h. */
#include "st_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int st_log_level = ST_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void st_log_set_level(int level)
{
    st_log_level = level;
}

int st_log_parse_level(const char *s)
{
    for (int i = 0; i <= ST_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void st_log_write(int level, const char *msg, const char *kvfmt, ...)
{
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    if (level < 0 || level > ST_LOG_ERROR)
        level = ST_LOG_ERROR;
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000, level_names[level]);
    for (const char *p = msg; *p && n < (int)sizeof line - 8; p++) {
        if (*p == '"' || *p == '\\')
            line[n++] = '\\';
        line[n++] = *p == '\n' ? ' ' : *p;
    }
    line[n++] = '"';
    if (kvfmt && *kvfmt) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        int k = vsnprintf(line + n, sizeof line - (size_t)n - 1, kvfmt, ap);
        va_end(ap);
        if (k > 0)
            n += k < (int)sizeof line - n - 1 ? k : (int)sizeof line - n - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
