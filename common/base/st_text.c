/* st_text — see st_text.h. */
#include "st_text.h"

#include <stdint.h>

#include "st_err.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
size_t st_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return need;
}

int st_json_escape(st_buf_t *b, const void *sv, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = sv;
    size_t i = 0;
    while (i < len) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t j = i;
        while (j < len && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
            j++;
        if (j > i) {
            int rc = st_buf_append(b, s + i, j - i);
            if (rc)
                return rc;
            i = j;
            continue;
        }
        unsigned char c = s[i];
        char esc[8];
        size_t el = 0;
        const void *src = esc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
            i++;
        } else if (c < 0x20) {
            esc[0] = '\\';
            el = 2;
            switch (c) {
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                el = 6;
            }
            i++;
        } else {
            uint32_t cp;
            size_t sl = st_utf8_seq(s + i, len - i, &cp);
            if (sl == 0) {
                memcpy(esc, "\xef\xbf\xbd", 3);
                el = 3;
                i++;
            } else if (cp == 0x2028 || cp == 0x2029) {
                memcpy(esc, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
                el = 6;
                i += sl;
            } else {
                src = s + i;
                el = sl;
                i += sl;
            }
        }
        int rc = st_buf_append(b, src, el);
        if (rc)
            return rc;
    }
    return 0;
}

int st_json_str(st_buf_t *b, const void *s, size_t len)
{
    size_t len0 = b->len;
    int rc = st_buf_put_u8(b, '"');
    if (!rc)
        rc = st_json_escape(b, s, len);
    if (!rc)
        rc = st_buf_put_u8(b, '"');
    if (rc)
        b->len = len0;
    return rc;
}
