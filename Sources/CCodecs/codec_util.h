/* Internal helpers shared by the PNG and JPEG shims: bounded message copies. */
#ifndef FA_CODEC_UTIL_H
#define FA_CODEC_UTIL_H

#include <stddef.h>

/* Copies `text` into msg (truncating, always NUL-terminated); msg may be NULL. */
void fa_set_message(char *msg, size_t capacity, const char *text);

/* printf-style variant of fa_set_message. */
void fa_set_messagef(char *msg, size_t capacity, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#endif
