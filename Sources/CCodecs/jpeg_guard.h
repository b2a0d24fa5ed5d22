/* Internal: the setjmp-based error manager and the growable memory destination that the
 * JPEG decoder and encoder share. Not part of the module's public header. */
#ifndef FA_JPEG_GUARD_H
#define FA_JPEG_GUARD_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t declared first */
#include <jpeglib.h>

/* libjpeg's error manager extended with a jump target and what we learned on the way.
 * error_exit formats the message, picks an FA_* status and longjmps to `jump`; it never
 * returns and never calls exit(), unlike libjpeg's default. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int status;                     /* FA_* code for the failure */
    int single_scan;                /* set after jpeg_start_decompress for one-scan files */
    int saw_eof;                    /* the data ended before an EOI marker */
    int warnings;                   /* recoverable corrupt-data warnings seen */
    char message[JMSG_LENGTH_MAX];  /* the failure, in words */
} fa_jpeg_error;

/* Installs the guarded handlers into `err` and returns its libjpeg view. */
struct jpeg_error_mgr *fa_jpeg_error_init(fa_jpeg_error *err);

/* Most scans a progressive file may have; libjpeg-turbo's own tools use a similar cap,
 * because each scan re-walks the whole coefficient buffer (a few hundred bytes of crafted
 * scans could otherwise keep a decoder busy for minutes). */
enum { FA_JPEG_MAX_SCANS = 1000 };

/* Progress monitor that enforces FA_JPEG_MAX_SCANS through error_exit. */
void fa_jpeg_scan_limit(j_common_ptr cinfo);

/* A destination manager writing into one malloc'd buffer that doubles as needed.
 * Unlike jpeg_mem_dest, the buffer stays owned here, so error paths can always free it. */
typedef struct {
    struct jpeg_destination_mgr pub;
    uint8_t *buffer;
    size_t capacity;
    size_t size;  /* valid after jpeg_finish_compress */
} fa_jpeg_destination;

void fa_jpeg_destination_init(j_compress_ptr cinfo, fa_jpeg_destination *dest);

#endif
