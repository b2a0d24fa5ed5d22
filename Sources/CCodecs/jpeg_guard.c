/* The guarded libjpeg error manager and the growable memory destination.
 *
 * Truncation policy. libjpeg reports a premature end of data as a *warning* and fills the
 * rest of the image with grey; we refuse such files instead (a half-grey photo would give
 * silently wrong attention maps). The memory source warns JWRN_JPEG_EOF whenever the
 * decoder asks for bytes past the end, which it also does when prefetching bits for the
 * last MCU of a complete file that merely lacks its EOI marker. So:
 *  - EOF while reading headers, anywhere in a progressive/multi-scan file (where a
 *    missing later scan cannot be told from a complete file) or in an arithmetic-coded
 *    file (whose decoder pads with zeros without a warning) is an error;
 *  - in a single-scan Huffman file EOF is noted, and becomes an error as soon as the entropy
 *    decoder actually needs bits that are not there (JWRN_HIT_MARKER after EOF). A baseline
 *    file missing only its EOI therefore decodes, as browsers show it.
 * Other corrupt-data warnings (extraneous bytes, bad restart markers) are counted and
 * tolerated: libjpeg resyncs, and cameras produce such files in the wild.
 */
#include "jpeg_guard.h"
#include "ccodecs.h"
#include "codec_util.h"

#include <jerror.h>
#include <stdlib.h>
#include <string.h>

static void guarded_error_exit(j_common_ptr cinfo) {
    fa_jpeg_error *err = (fa_jpeg_error *)cinfo->err;
    int code = err->pub.msg_code;
    if (code == JERR_BAD_PRECISION) {
        err->status = FA_ERR_UNSUPPORTED;
        fa_set_messagef(err->message, sizeof err->message,
                        "unsupported %d-bit JPEG (only 8-bit samples are decoded)",
                        err->pub.msg_parm.i[0]);
    } else if (code == JERR_OUT_OF_MEMORY || code == JERR_NO_BACKING_STORE) {
        err->status = FA_ERR_NOMEM;
        fa_set_message(err->message, sizeof err->message, "out of memory");
    } else {
        err->status = code == JERR_INPUT_EMPTY ? FA_ERR_TRUNCATED : FA_ERR_CORRUPT;
        (*err->pub.format_message)(cinfo, err->message);
    }
    longjmp(err->jump, 1);
}

static void guarded_emit_message(j_common_ptr cinfo, int level) {
    fa_jpeg_error *err = (fa_jpeg_error *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    int code = err->pub.msg_code;
    if (code == JWRN_JPEG_EOF) err->saw_eof = 1;
    if ((code == JWRN_JPEG_EOF && !err->single_scan) || (code == JWRN_HIT_MARKER && err->saw_eof)) {
        err->status = FA_ERR_TRUNCATED;
        fa_set_message(err->message, sizeof err->message, "premature end of data");
        longjmp(err->jump, 1);
    }
    if (err->warnings < 1000000) err->warnings += 1;
    err->pub.num_warnings += 1;
}

/* libjpeg's default prints to stderr; a library must stay quiet. */
static void silent_output_message(j_common_ptr cinfo) { (void)cinfo; }

struct jpeg_error_mgr *fa_jpeg_error_init(fa_jpeg_error *err) {
    memset(err, 0, sizeof *err);
    jpeg_std_error(&err->pub);
    err->pub.error_exit = guarded_error_exit;
    err->pub.emit_message = guarded_emit_message;
    err->pub.output_message = silent_output_message;
    return &err->pub;
}

void fa_jpeg_scan_limit(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > FA_JPEG_MAX_SCANS) {
        fa_jpeg_error *err = (fa_jpeg_error *)cinfo->err;
        err->status = FA_ERR_CORRUPT;
        fa_set_messagef(err->message, sizeof err->message,
                        "more than %d progressive scans", FA_JPEG_MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

static void destination_start(j_compress_ptr cinfo) {
    fa_jpeg_destination *dest = (fa_jpeg_destination *)cinfo->dest;
    dest->capacity = 64 * 1024;
    dest->buffer = malloc(dest->capacity);
    if (dest->buffer == NULL) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 0);
    dest->pub.next_output_byte = dest->buffer;
    dest->pub.free_in_buffer = dest->capacity;
}

/* Called when the buffer is full: double it, keeping what was written. */
static boolean destination_grow(j_compress_ptr cinfo) {
    fa_jpeg_destination *dest = (fa_jpeg_destination *)cinfo->dest;
    size_t used = dest->capacity;
    uint8_t *bigger = realloc(dest->buffer, dest->capacity * 2);
    if (bigger == NULL) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
    dest->buffer = bigger;
    dest->capacity *= 2;
    dest->pub.next_output_byte = bigger + used;
    dest->pub.free_in_buffer = dest->capacity - used;
    return TRUE;
}

static void destination_finish(j_compress_ptr cinfo) {
    fa_jpeg_destination *dest = (fa_jpeg_destination *)cinfo->dest;
    dest->size = dest->capacity - dest->pub.free_in_buffer;
}

void fa_jpeg_destination_init(j_compress_ptr cinfo, fa_jpeg_destination *dest) {
    memset(dest, 0, sizeof *dest);
    dest->pub.init_destination = destination_start;
    dest->pub.empty_output_buffer = destination_grow;
    dest->pub.term_destination = destination_finish;
    cinfo->dest = &dest->pub;
}
