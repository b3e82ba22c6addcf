/* st_labels — label sets: ordering, hashing, validation; see st_labels.h. */
#include "st_labels.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "st_err.h"
#include "st_text.h"

static int slice_cmp(const char *a, uint32_t na, const char *b, uint32_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c)
        return c;
    return na < nb ? -1 : na > nb;
}

void st_labels_sort(st_label_t *l, size_t n)
{
    /* insertion sort: label sets are small (<= 64) and usually nearly sorted */
    for (size_t i = 1; i < n; i++) {
        st_label_t t = l[i];
        size_t j = i;
        while (j > 0 && slice_cmp(l[j - 1].name, l[j - 1].name_len, t.name, t.name_len) > 0) {
            l[j] = l[j - 1];
            j--;
        }
        l[j] = t;
    }
}

int st_labels_cmp(const st_label_t *a, size_t na, const st_label_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        int c = slice_cmp(a[i].name, a[i].name_len, b[i].name, b[i].name_len);
        if (c)
            return c;
        c = slice_cmp(a[i].value, a[i].value_len, b[i].value, b[i].value_len);
        if (c)
            return c;
    }
    return na < nb ? -1 : na > nb;
}

static int is_name_label(const st_label_t *l)
{
    return l->name_len == 8 && memcmp(l->name, ST_METRIC_LABEL, 8) == 0;
}

static uint64_t hash_key(const st_label_t *l, size_t n, int skip_name)
{
    /* Fast path: build the canonical key on the stack and hash it in one shot. */
    char key[2048];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_name && is_name_label(&l[i]))
            continue;
        size_t need = (size_t)l[i].name_len + l[i].value_len + 2;
        if (need > sizeof key - len)
            goto stream;
        memcpy(key + len, l[i].name, l[i].name_len);
        len += l[i].name_len;
        key[len++] = (char)0xff;
        memcpy(key + len, l[i].value, l[i].value_len);
        len += l[i].value_len;
        key[len++] = (char)0xff;
    }
    return XXH3_64bits(key, len);
stream:;
    XXH3_state_t st;
    static const char sep = (char)0xff;
    XXH3_64bits_reset(&st);
    for (size_t i = 0; i < n; i++) {
        if (skip_name && is_name_label(&l[i]))
            continue;
        XXH3_64bits_update(&st, l[i].name, l[i].name_len);
        XXH3_64bits_update(&st, &sep, 1);
        XXH3_64bits_update(&st, l[i].value, l[i].value_len);
        XXH3_64bits_update(&st, &sep, 1);
    }
    return XXH3_64bits_digest(&st);
}

uint64_t st_labels_hash(const st_label_t *l, size_t n)
{
    return hash_key(l, n, 0);
}

uint64_t st_labels_hash_noname(const st_label_t *l, size_t n)
{
    return hash_key(l, n, 1);
}

uint64_t st_series_hash_from(uint64_t noname_hash, const char *name, size_t len)
{
    return XXH3_64bits_withSeed(name, len, noname_hash);
}

uint64_t st_series_hash(const st_label_t *l, size_t n)
{
    const char *name = "";
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_name_label(&l[i])) {
            name = l[i].value;
            len = l[i].value_len;
            break;
        }
    }
    return st_series_hash_from(st_labels_hash_noname(l, n), name, len);
}

int st_labels_validate(const st_label_t *l, size_t n, const char **why)
{
    if (n > ST_LABELS_MAX) {
        *why = "too many labels (max 64)";
        return ST_ELIMIT;
    }
    for (size_t i = 0; i < n; i++) {
        if (l[i].name_len == 0) {
            *why = "empty label name";
            return ST_EINVAL;
        }
        if (l[i].name_len > ST_LABEL_NAME_MAX) {
            *why = "label name longer than 256 bytes";
            return ST_ELIMIT;
        }
        if (l[i].value_len > ST_LABEL_VALUE_MAX) {
            *why = "label value longer than 4096 bytes";
            return ST_ELIMIT;
        }
        if (!st_utf8_valid(l[i].name, l[i].name_len)) {
            *why = "label name is not valid UTF-8";
            return ST_EINVAL;
        }
        if (!st_utf8_valid(l[i].value, l[i].value_len)) {
            *why = "label value is not valid UTF-8";
            return ST_EINVAL;
        }
        if (i > 0 && slice_cmp(l[i - 1].name, l[i - 1].name_len, l[i].name, l[i].name_len) >= 0) {
            *why = "duplicate label name";
            return ST_EINVAL;
        }
    }
    return 0;
}

int st_labels_find(const st_label_t *l, size_t n, const char *name)
{
    uint32_t nl = (uint32_t)strlen(name);
    for (size_t i = 0; i < n; i++)
        if (l[i].name_len == nl && memcmp(l[i].name, name, nl) == 0)
            return (int)i;
    return -1;
}
