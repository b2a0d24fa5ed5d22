/* placeholder until the codecs land */
int fa_codecs_version(void);
