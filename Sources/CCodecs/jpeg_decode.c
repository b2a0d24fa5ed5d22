/* JPEG decode with libjpeg(-turbo) under a setjmp guard.
 *
 * Order matters for hostile input: jpeg_read_header parses only markers (SOF gives the
 * dimensions), the pixel limit is checked next, and only then does jpeg_start_decompress
 * allocate sample buffers (and, for progressive files, the whole-image coefficient buffer).
 * Every failure unwinds to the setjmp below, which frees what this file allocated and
 * destroys the libjpeg object, so no error path leaks.
 */
#include "ccodecs.h"
#include "codec_util.h"
#include "jpeg_guard.h"

#include <jerror.h>

#include <stdlib.h>
#include <string.h>

/* libjpeg-turbo cannot convert CMYK to RGB, so we ask for CMYK and convert here.
 * Adobe (Photoshop) files store inverted ink values, i.e. 255 - ink, so that
 * R = C'·K'/255; files without the Adobe APP14 marker store plain ink amounts. */
static void cmyk_row_to_rgb(const JSAMPLE *cmyk, uint8_t *rgb, JDIMENSION width, int inverted) {
    for (JDIMENSION x = 0; x < width; x++) {
        unsigned c = cmyk[4 * x], m = cmyk[4 * x + 1], y = cmyk[4 * x + 2], k = cmyk[4 * x + 3];
        if (!inverted) {
            c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k;
        }
        rgb[3 * x] = (uint8_t)((c * k + 127) / 255);
        rgb[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        rgb[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

/* The first APP1 marker that carries EXIF, or 1 (upright). */
static int saved_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            return fa_exif_orientation(m->data, m->data_length);
    }
    return 1;
}

int fa_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels,
                   fa_decoded *out, char *msg, size_t msg_capacity) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    fa_jpeg_error err;
    uint8_t *volatile pixels = NULL;

    memset(out, 0, sizeof *out);
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = fa_jpeg_error_init(&err);
    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        fa_set_message(msg, msg_capacity, err.message);
        return err.status;
    }
    jpeg_create_decompress(&cinfo);
    memset(&progress, 0, sizeof progress);
    progress.progress_monitor = fa_jpeg_scan_limit;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE); /* 12-bit files fail here (JERR_BAD_PRECISION) */

    out->width = cinfo.image_width;
    out->height = cinfo.image_height;
    out->source_bit_depth = cinfo.data_precision;
    out->source_color_type = (int32_t)cinfo.jpeg_color_space;
    out->orientation = saved_orientation(&cinfo);

    uint64_t count = (uint64_t)cinfo.image_width * (uint64_t)cinfo.image_height;
    if (count > max_pixels) {
        fa_set_messagef(msg, msg_capacity, "%u×%u pixels exceeds the limit of %llu pixels",
                        cinfo.image_width, cinfo.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return FA_ERR_TOO_BIG;
    }

    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    /* Bound libjpeg's own allocations too: a progressive file's coefficient buffer is
     * 2 bytes per sample per component; 16 bytes per pixel plus slack covers every layout. */
    cinfo.mem->max_memory_to_use = (long)(count * 16 + (64L << 20));
    jpeg_start_decompress(&cinfo);  /* progressive files are read whole here */
    /* The arithmetic decoder pads missing data with zeros silently (no JWRN_HIT_MARKER), so
     * only Huffman-coded single-scan files may tolerate an EOF (policy in jpeg_guard.c). */
    err.single_scan = !jpeg_has_multiple_scans(&cinfo) && !cinfo.arith_code;

    JDIMENSION width = cinfo.output_width, height = cinfo.output_height;
    if (cinfo.output_components != (cmyk ? 4 : 3)) {
        fa_set_messagef(err.message, sizeof err.message,
                        "unexpected %d output components", cinfo.output_components);
        err.status = FA_ERR_UNSUPPORTED;
        longjmp(err.jump, 1);
    }
    pixels = malloc((size_t)width * height * 3 + 1);
    if (pixels == NULL) ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 2);
    JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                                             width * 4, 1) : NULL;
    while (cinfo.output_scanline < height) {
        uint8_t *row = pixels + (size_t)cinfo.output_scanline * width * 3;
        JSAMPROW target = cmyk ? cmyk_row[0] : row;
        /* The memory source never suspends, so 0 rows means libjpeg gave up. */
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) ERREXIT(&cinfo, JERR_INPUT_EOF);
        if (cmyk) cmyk_row_to_rgb(cmyk_row[0], row, width, cinfo.saw_Adobe_marker);
    }
    jpeg_finish_decompress(&cinfo);

    out->pixels = pixels;
    out->width = width;
    out->height = height;
    out->channels = 3;
    out->warnings = err.warnings;
    jpeg_destroy_decompress(&cinfo);
    return FA_OK;
}
