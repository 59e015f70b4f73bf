#ifndef GREET_LIB_H
#define GREET_LIB_H
#include <stddef.h>
/* Writes "Hello, <name>!" into buf (at most len bytes, NUL-terminated). */
int greet(const char *name, char *buf, size_t len);
#endif
