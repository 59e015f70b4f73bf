#include <stdio.h>
#include "greet_lib.h"

int greet(const char *name, char *buf, size_t len) {
    if (name == NULL || name[0] == '\0') {
        name = "world";
    }
    int n = snprintf(buf, len, "Hello, %s!", name);
    return (n < 0 || (size_t)n >= len) ? -1 : n;
}
