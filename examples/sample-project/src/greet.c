#include <stdio.h>
#include "greet_lib.h"

int main(int argc, char **argv) {
    char buf[256];
    if (greet(argc > 1 ? argv[1] : NULL, buf, sizeof buf) < 0) {
        fprintf(stderr, "greet: name too long\n");
        return 2;
    }
    puts(buf);
    return 0;
}
