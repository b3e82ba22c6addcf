/*
 * codec_internal — test-only view of a block's coding choices.
 *
 * The format byte (first byte of every block) packs the timestamp mode
 * (bits 0-1), the value mode (bits 2-4) and the format version (bits 5-7).
 * Tests and the benchmark use codec_block_modes() to assert which coding the
 * encoder picked; nothing in the engine needs it.
 */
#ifndef CODEC_INTERNAL_H
#define CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define CODEC_VERSION 0      /* a block of samples (sections below) */
#define CODEC_VERSION_COLS 1 /* a columnar block (codec.c, COLUMNAR BLOCKS) */
#define CODEC_COLS_MAX 16    /* columns of a columnar block */

enum codec_ts_mode {
    CODEC_TS_CONST = 0, /* equal steps: nothing stored beyond the header */
    CODEC_TS_DELTA = 1, /* Rice-coded (delta - 1) */
    CODEC_TS_DOD = 2,   /* first delta + Rice-coded zigzag(delta-of-delta) */
};

enum codec_val_mode {
    CODEC_V_CONST = 0,     /* one raw float64, all values bit-identical */
    CODEC_V_DEC_DELTA = 1, /* decimal mantissas, Rice-coded zigzag(delta) */
    CODEC_V_DEC_DOD = 2,   /* decimal mantissas, Rice-coded zigzag(delta-of-delta) */
    CODEC_V_XOR = 3,       /* Gorilla-style XOR with leading/trailing-zero windows */
};

#define CODEC_TS_MODES 3
#define CODEC_V_MODES 4
/* A column of a columnar block that repeats an earlier column (and the
 * value mode codec_block_modes reports for a columnar block). */
#define CODEC_V_SAME 4
#define CODEC_V_COLUMNS 4
/* A column of a columnar block coded as decimal differences from an
 * earlier column (min or max against first or last: small numbers). */
#define CODEC_V_DIFF 5

/* Read the modes of an encoded block (only its header). For a columnar
 * block: the group starts' timestamp mode and CODEC_V_COLUMNS. */
int codec_block_modes(const uint8_t *p, size_t len, int *ts_mode, int *val_mode);

#endif
