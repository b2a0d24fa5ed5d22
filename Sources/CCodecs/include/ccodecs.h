/* CCodecs: a private C shim over libpng's simplified API and a setjmp-guarded libjpeg.
 *
 * No stable API: only ImageIO calls it. Every function returns an FA_* status code and, on
 * failure, writes a one-line, NUL-terminated cause into the caller's `msg` buffer, so no
 * longjmp ever crosses a Swift frame. Pixel buffers the shim allocates are released with
 * fa_free(), on success only (on failure nothing is left allocated).
 */
#ifndef FA_CCODECS_H
#define FA_CCODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes shared by every entry point. */
enum {
    FA_OK = 0,
    FA_ERR_CORRUPT = 1,      /* the data is damaged or not well-formed; msg says how */
    FA_ERR_TOO_BIG = 2,      /* width x height exceeds max_pixels; nothing was allocated */
    FA_ERR_UNSUPPORTED = 3,  /* well-formed but a variant we do not decode (12-bit JPEG) */
    FA_ERR_NOMEM = 4,        /* an allocation failed */
    FA_ERR_TRUNCATED = 5,    /* the data ends before the image does */
    FA_ERR_ARGUMENT = 6      /* a caller error (bad channel count, zero size, ...) */
};

/* A decoded image: 8-bit, interleaved, rows packed (stride = width * channels). */
typedef struct {
    uint8_t *pixels;            /* malloc'd; release with fa_free */
    uint32_t width;
    uint32_t height;
    uint32_t channels;          /* 3 (RGB) or 4 (RGBA) */
    int32_t source_has_alpha;   /* PNG: alpha channel or tRNS; JPEG: always 0 */
    int32_t source_bit_depth;   /* PNG IHDR bit depth (1..16); JPEG data precision */
    int32_t source_color_type;  /* PNG IHDR colour type; JPEG J_COLOR_SPACE of the file */
    int32_t orientation;        /* EXIF orientation 1..8 (1 when absent or unreadable) */
    int32_t warnings;           /* recoverable problems libjpeg/libpng reported and fixed */
} fa_decoded;

/* A byte buffer produced by an encoder. */
typedef struct {
    uint8_t *data;              /* malloc'd; release with fa_free */
    size_t size;
} fa_buffer;

/* Frees any buffer the shim returned (NULL is fine). */
void fa_free(void *pointer);

/* PNG through png_image_*: any colour type/bit depth -> RGB8, or RGBA8 when the source
 * has alpha or tRNS. The pixel limit is checked after png_image_begin_read_from_memory and
 * before png_image_finish_read allocates or inflates anything. */
int fa_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                  fa_decoded *out, char *msg, size_t msg_capacity);

/* PNG encode of 8-bit gray (1), RGB (3) or RGBA (4) pixels, rows packed. */
int fa_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                  fa_buffer *out, char *msg, size_t msg_capacity);

/* JPEG -> RGB8 (gray, YCbCr, CMYK and Adobe-inverted CMYK/YCCK converted). The header is
 * read first and the pixel limit checked before jpeg_start_decompress. A premature end of
 * data is an error (FA_ERR_TRUNCATED), not a grey fill (policy in jpeg_guard.c).
 * 12-bit files: FA_ERR_UNSUPPORTED. */
int fa_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                   fa_decoded *out, char *msg, size_t msg_capacity);

/* JPEG encode of 8-bit gray (1) or RGB (3) pixels; quality 1...100. */
int fa_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                   int quality, fa_buffer *out, char *msg, size_t msg_capacity);

/* EXIF orientation (1..8) from an APP1 payload starting with "Exif\0\0"; 1 if absent. */
int fa_exif_orientation(const uint8_t *app1, size_t size);

#ifdef __cplusplus
}
#endif

#endif
