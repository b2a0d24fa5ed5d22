int fa_codecs_version(void) { return 1; }
