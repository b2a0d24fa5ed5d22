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

#include <png.h>
#include <stdlib.h>
#include <string.h>

/* PNG signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4) = 24. */
enum { IHDR_BIT_DEPTH_OFFSET = 24, IHDR_COLOR_TYPE_OFFSET = 25 };

/* libpng reports a cut file as "read beyond end of data" (memory reader) or a zlib
 * "Not enough image data"; both mean the data ended before the image did. */
static int png_status_for_message(const char *message) {
    if (strstr(message, "end of data") != NULL || strstr(message, "Not enough image data") != NULL)
        return FA_ERR_TRUNCATED;
    if (strstr(message, "out of memory") != NULL || strstr(message, "Out of Memory") != NULL)
        return FA_ERR_NOMEM;
    return FA_ERR_CORRUPT;
}

int fa_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                  fa_decoded *out, char *msg, size_t msg_capacity) {
    memset(out, 0, sizeof *out);
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;

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
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
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
