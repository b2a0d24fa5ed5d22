/* JPEG encode (baseline, 4:2:0 for colour, optimised Huffman tables) under the same
 * setjmp guard as the decoder; the output grows in a buffer this file owns, so a failure
 * part-way frees it and returns a message instead of leaving a half-written stream. */
#include "ccodecs.h"
#include "codec_util.h"
#include "jpeg_guard.h"

#include <stdlib.h>
#include <string.h>

int fa_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                   int quality, fa_buffer *out, char *msg, size_t msg_capacity) {
    struct jpeg_compress_struct cinfo;
    fa_jpeg_error err;
    fa_jpeg_destination dest;

    out->data = NULL;
    out->size = 0;
    if (width == 0 || height == 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION ||
        (channels != 1 && channels != 3)) {
        fa_set_messagef(msg, msg_capacity,
                        "cannot encode a %u×%u image with %u channels as JPEG", width, height, channels);
        return FA_ERR_ARGUMENT;
    }
    if (quality < 1) quality = 1;
    if (quality > 100) quality = 100;

    memset(&cinfo, 0, sizeof cinfo);
    memset(&dest, 0, sizeof dest);
    cinfo.err = fa_jpeg_error_init(&err);
    if (setjmp(err.jump)) {
        free(dest.buffer);
        jpeg_destroy_compress(&cinfo);
        fa_set_message(msg, msg_capacity, err.message);
        return err.status == FA_ERR_NOMEM ? FA_ERR_NOMEM : FA_ERR_ARGUMENT;
    }
    jpeg_create_compress(&cinfo);
    fa_jpeg_destination_init(&cinfo, &dest);

    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = (int)channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.optimize_coding = TRUE;

    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * channels;
    while (cinfo.next_scanline < height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);

    out->data = dest.buffer;
    out->size = dest.size;
    jpeg_destroy_compress(&cinfo);
    return FA_OK;
}
