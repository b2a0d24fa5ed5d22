/* PNG decode and encode through libpng's simplified API (png_image_*).
 *
 * The simplified API runs every libpng call under its own setjmp (png_safe_execute), so a
 * corrupt file comes back as a 0 return with the reason in image.message; nothing here
 * longjmps. The pixel limit is enforced between begin_read (which parses only the header
 * chunks) and finish_read (which allocates nothing itself, but inflates into our buffer),
 * so a crafted IHDR with huge dimensions costs neither memory nor time.
 */
#include "ccodecs.h"
#include "codec_util.h"

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

/* PNG signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4) = 24. */
enum { IHDR_BIT_DEPTH_OFFSET = 24, IHDR_COLOR_TYPE_OFFSET = 25, IHDR_INTERLACE_OFFSET = 28 };

/* libpng reports a cut file as "read beyond end of data" (memory reader) or a zlib
 * "Not enough image data"; both mean the data ended before the image did. */
static int png_status_for_message(const char *message) {
    if (strstr(message, "end of data") != NULL || strstr(message, "Not enough image data") != NULL)
        return FA_ERR_TRUNCATED;
    if (strstr(message, "out of memory") != NULL || strstr(message, "Out of Memory") != NULL)
        return FA_ERR_NOMEM;
    return FA_ERR_CORRUPT;
}

/* Work-around for libpng bug pnggroup/libpng#853 (present in 1.6.39 as shipped by Debian,
 * open upstream): reading an Adam7-interlaced 16-bit file into 8-bit output through the
 * simplified API corrupts about half the pixels, because the interlace passes are combined
 * in a scratch row that does not hold the previous passes. The 16-bit *linear* output path
 * is unaffected, so for those files we read 16-bit linear (premultiplied when there is
 * alpha, as the simplified API defines it) and encode to 8-bit here with the same 2.2
 * power curve libpng uses for "sRGB" output; results match the non-interlaced file to ±1. */
static int finish_read_16bit_interlaced(png_image *image, uint8_t *buffer, uint32_t channels) {
    image->format = channels == 4 ? PNG_FORMAT_LINEAR_RGB_ALPHA : PNG_FORMAT_LINEAR_RGB;
    size_t samples = (size_t)image->width * image->height * channels;
    uint16_t *linear = malloc(samples * sizeof(uint16_t) + 2);
    if (linear == NULL) return -1;
    if (!png_image_finish_read(image, NULL, linear, 0, NULL)) {
        free(linear);
        return 0;
    }
    for (size_t p = 0; p < samples; p += channels) {
        double alpha = channels == 4 ? linear[p + 3] / 65535.0 : 1.0;
        for (uint32_t k = 0; k < 3; k++) {
            double v = alpha > 0 ? linear[p + k] / 65535.0 / alpha : 0.0;
            if (v > 1) v = 1;
            buffer[p + k] = (uint8_t)lround(255.0 * pow(v, 1.0 / 2.2));
        }
        if (channels == 4) buffer[p + 3] = (uint8_t)lround(alpha * 255.0);
    }
    free(linear);
    return 1;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Walks the chunks from the signature to IEND. Returns 0 when every chunk (length, type,
 * data, CRC) lies inside the file, with the IDAT payload bytes in *idat; -1 when one runs past
 * the end. Checked before libpng sees the file: libpng 1.6.39 (Debian 12) allocates *and
 * zeroes* an ancillary chunk's declared length before reading it (png_read_buffer), and the
 * simplified API only warns that it is "too large", so a 61-byte file whose tEXt claims
 * 1.6 GB cost 1.6 GB of RSS and 2 s (found by fuzz-png). A chunk past the end of the file is
 * a truncated (or crafted) file either way. */
static int png_scan_chunks(const uint8_t *data, size_t size, uint64_t *idat) {
    *idat = 0;
    size_t p = 8;
    for (;;) {
        if (size - p < 8) return -1;
        uint32_t length = be32(data + p);
        const uint8_t *type = data + p + 4;
        if (size - p - 8 < (uint64_t)length + 4) return -1;
        if (memcmp(type, "IDAT", 4) == 0) *idat += length;
        if (memcmp(type, "IEND", 4) == 0) return 0;
        p += 12 + (size_t)length;
    }
}

/* Bytes of filtered scanlines (a filter byte per row) the IDAT stream must inflate to. */
static uint64_t png_raw_bytes(uint32_t width, uint32_t height, int bit_depth, int color_type, int interlaced) {
    static const int samples_per_type[7] = {1, 0, 3, 1, 2, 0, 4};
    int samples = color_type >= 0 && color_type <= 6 ? samples_per_type[color_type] : 0;
    uint64_t bits = (uint64_t)samples * (uint64_t)bit_depth;
    if (!interlaced) return (uint64_t)height * (1 + ((uint64_t)width * bits + 7) / 8);
    /* Adam7: pass p covers columns x0 + k·dx and rows y0 + k·dy. */
    static const uint32_t x0[7] = {0, 4, 0, 2, 0, 1, 0}, dx[7] = {8, 8, 4, 4, 2, 2, 1};
    static const uint32_t y0[7] = {0, 0, 4, 0, 2, 0, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    uint64_t total = 0;
    for (int pass = 0; pass < 7; pass++) {
        uint64_t w = width > x0[pass] ? ((uint64_t)width - x0[pass] + dx[pass] - 1) / dx[pass] : 0;
        uint64_t h = height > y0[pass] ? ((uint64_t)height - y0[pass] + dy[pass] - 1) / dy[pass] : 0;
        if (w > 0 && h > 0) total += h * (1 + (w * bits + 7) / 8);
    }
    return total;
}

/* Deflate expands at most 1032:1 (a 258-byte match per 2-bit code pair), so IDAT data of n
 * bytes inflates to at most 1032·n bytes (+ slack for block headers). In the other direction,
 * no encoder needs more than ~9/8 of the raw size (fixed-Huffman literals are at most 9 bits;
 * stored blocks add 5 bytes per 64 KB), so IDAT data beyond twice the raw size plus 64 KB is
 * not image data: libpng would inflate all of it (~1 GB per MB of crafted zeros) after the
 * last row, a CPU bomb behind a 16×16 header. */
enum { DEFLATE_MAX_RATIO = 1032, DEFLATE_SLACK = 1024, IDAT_SURPLUS_SLACK = 65536 };

int fa_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                  fa_decoded *out, char *msg, size_t msg_capacity) {
    memset(out, 0, sizeof *out);
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;

    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    uint64_t idat = 0;
    if (size >= 8 && memcmp(data, signature, 8) == 0 && png_scan_chunks(data, size, &idat) != 0) {
        fa_set_message(msg, msg_capacity, "a chunk runs past the end of the file");
        return FA_ERR_TRUNCATED;
    }
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        int status = png_status_for_message(image.message);
        fa_set_message(msg, msg_capacity, image.message);
        png_image_free(&image);
        return status;
    }

    /* begin_read succeeded, so the IHDR is the first chunk and was validated by libpng. */
    out->source_bit_depth = size > IHDR_BIT_DEPTH_OFFSET ? data[IHDR_BIT_DEPTH_OFFSET] : 0;
    out->source_color_type = size > IHDR_COLOR_TYPE_OFFSET ? data[IHDR_COLOR_TYPE_OFFSET] : 0;
    out->source_has_alpha = (image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
    out->orientation = 1;

    uint64_t pixels = (uint64_t)image.width * (uint64_t)image.height;
    if (pixels > max_pixels) {
        fa_set_messagef(msg, msg_capacity, "%u×%u pixels exceeds the limit of %llu pixels",
                        image.width, image.height, (unsigned long long)max_pixels);
        out->width = image.width;
        out->height = image.height;
        png_image_free(&image);
        return FA_ERR_TOO_BIG;
    }

    /* A small file cannot hold a big image: when the IDAT bytes present could not inflate to
     * the scanlines the IHDR declares even at deflate's best ratio, the file is truncated or
     * crafted (a "decompression bomb" header over a few bytes of data). Refused here, before
     * the pixel buffer is allocated, so a tiny file never costs width × height memory. */
    int interlaced = size > IHDR_INTERLACE_OFFSET && data[IHDR_INTERLACE_OFFSET] == 1;
    uint64_t raw = png_raw_bytes(image.width, image.height, out->source_bit_depth, out->source_color_type, interlaced);
    if (raw > idat * DEFLATE_MAX_RATIO + DEFLATE_SLACK) {
        fa_set_messagef(msg, msg_capacity,
                        "%u×%u image needs %llu bytes of scanlines but its IDAT data (%llu bytes) can inflate to "
                        "at most %llu; the file is truncated or crafted",
                        image.width, image.height, (unsigned long long)raw, (unsigned long long)idat,
                        (unsigned long long)(idat * DEFLATE_MAX_RATIO + DEFLATE_SLACK));
        out->width = image.width;
        out->height = image.height;
        png_image_free(&image);
        return FA_ERR_CORRUPT;
    }
    if (idat > 2 * raw + IDAT_SURPLUS_SLACK) {
        fa_set_messagef(msg, msg_capacity,
                        "IDAT data is %llu bytes, far more than the %u×%u image's %llu bytes of scanlines; "
                        "the file is crafted (a decompression bomb) or damaged",
                        (unsigned long long)idat, image.width, image.height, (unsigned long long)raw);
        out->width = image.width;
        out->height = image.height;
        png_image_free(&image);
        return FA_ERR_CORRUPT;
    }

    uint32_t channels = out->source_has_alpha ? 4 : 3;
    image.format = out->source_has_alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    /* Without this flag a 16-bit file lacking gAMA/sRGB is taken as *linear* light and
     * brightened on the way to 8 bits; photos saved at 16 bits are sRGB-encoded. */
    image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;

    size_t bytes = (size_t)pixels * channels;
    uint8_t *buffer = malloc(bytes > 0 ? bytes : 1);
    if (buffer == NULL) {
        fa_set_message(msg, msg_capacity, "out of memory");
        png_image_free(&image);
        return FA_ERR_NOMEM;
    }
    int interlaced16 = out->source_bit_depth == 16 && interlaced;
    int read = interlaced16 ? finish_read_16bit_interlaced(&image, buffer, channels)
                            : png_image_finish_read(&image, NULL, buffer, 0, NULL);
    if (read < 0) {
        fa_set_message(msg, msg_capacity, "out of memory");
        free(buffer);
        png_image_free(&image);
        return FA_ERR_NOMEM;
    }
    if (!read) {
        int status = png_status_for_message(image.message);
        fa_set_message(msg, msg_capacity, image.message);
        free(buffer);
        png_image_free(&image); /* finish_read frees on failure; a second free is a no-op */
        return status;
    }
    if (image.warning_or_error & PNG_IMAGE_WARNING) out->warnings = 1;

    out->pixels = buffer;
    out->width = image.width;
    out->height = image.height;
    out->channels = channels;
    png_image_free(&image);
    return FA_OK;
}

int fa_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                  fa_buffer *out, char *msg, size_t msg_capacity) {
    out->data = NULL;
    out->size = 0;
    if (width == 0 || height == 0 || (channels != 1 && channels != 3 && channels != 4)) {
        fa_set_messagef(msg, msg_capacity, "cannot encode a %u×%u image with %u channels",
                        width, height, channels);
        return FA_ERR_ARGUMENT;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;

    /* First pass with no buffer asks libpng for the exact size; the second writes. */
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) {
        fa_set_message(msg, msg_capacity, image.message);
        png_image_free(&image);
        return FA_ERR_ARGUMENT;
    }
    uint8_t *buffer = malloc(size > 0 ? size : 1);
    if (buffer == NULL) {
        fa_set_message(msg, msg_capacity, "out of memory");
        return FA_ERR_NOMEM;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) {
        fa_set_message(msg, msg_capacity, image.message);
        free(buffer);
        png_image_free(&image);
        return FA_ERR_ARGUMENT;
    }
    out->data = buffer;
    out->size = size;
    return FA_OK;
}
