/* Shared shim pieces: fa_free, bounded message formatting and the EXIF orientation reader.
 *
 * The EXIF reader is deliberately tiny: it walks IFD0 of the TIFF structure inside an APP1
 * "Exif" payload looking for tag 0x0112 (Orientation) and bounds-checks every offset, since
 * APP1 segments come from arbitrary cameras and editors and are often malformed.
 */
#include "ccodecs.h"
#include "codec_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fa_free(void *pointer) { free(pointer); }

void fa_set_message(char *msg, size_t capacity, const char *text) {
    if (msg == NULL || capacity == 0) return;
    if (text == NULL || text[0] == '\0') text = "unknown error";
    size_t n = strlen(text);
    if (n >= capacity) n = capacity - 1;
    memcpy(msg, text, n);
    msg[n] = '\0';
}

void fa_set_messagef(char *msg, size_t capacity, const char *format, ...) {
    if (msg == NULL || capacity == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(msg, capacity, format, args);
    va_end(args);
}

/* Reads a 16- or 32-bit TIFF integer in the byte order the TIFF header declared. */
static uint32_t tiff_read(const uint8_t *p, int bytes, int little_endian) {
    uint32_t value = 0;
    for (int i = 0; i < bytes; i++) {
        int index = little_endian ? bytes - 1 - i : i;
        value = (value << 8) | p[index];
    }
    return value;
}

int fa_exif_orientation(const uint8_t *app1, size_t size) {
    static const uint8_t exif_id[6] = {'E', 'x', 'i', 'f', 0, 0};
    if (app1 == NULL || size < 6 + 8 || memcmp(app1, exif_id, 6) != 0) return 1;
    const uint8_t *tiff = app1 + 6;
    size_t tiff_size = size - 6;

    int little;
    if (tiff[0] == 'I' && tiff[1] == 'I') little = 1;
    else if (tiff[0] == 'M' && tiff[1] == 'M') little = 0;
    else return 1;
    if (tiff_read(tiff + 2, 2, little) != 42) return 1;

    uint32_t ifd = tiff_read(tiff + 4, 4, little);
    if (ifd > tiff_size || tiff_size - ifd < 2) return 1;
    uint32_t count = tiff_read(tiff + ifd, 2, little);
    size_t entries = ifd + 2;
    for (uint32_t i = 0; i < count; i++) {
        size_t entry = entries + (size_t)i * 12;
        if (entry > tiff_size || tiff_size - entry < 12) return 1;
        uint32_t tag = tiff_read(tiff + entry, 2, little);
        if (tag != 0x0112) continue;
        uint32_t type = tiff_read(tiff + entry + 2, 2, little);
        if (type != 3) return 1; /* Orientation is a SHORT; anything else is malformed */
        uint32_t value = tiff_read(tiff + entry + 8, 2, little);
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}
