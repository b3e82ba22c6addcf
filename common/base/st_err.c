/* st_err — text for the error table in st_err.h. */
#include "st_err.h"

const char *st_strerror(int err)
{
    switch (err) {
    case ST_OK:
        return "success";
#define ST_ERR_TEXT(name, code, text)                                                              \
    case code:                                                                                     \
        return text;
        ST_ERRNO_MAP(ST_ERR_TEXT)
#undef ST_ERR_TEXT
    }
    return "unknown error";
}

const char *st_errname(int err)
{
    switch (err) {
    case ST_OK:
        return "OK";
#define ST_ERR_NAME(name, code, text)                                                              \
    case code:                                                                                     \
        return #name;
        ST_ERRNO_MAP(ST_ERR_NAME)
#undef ST_ERR_NAME
    }
    return "EUNKNOWN";
}
