#!/bin/sh
# Tests for greet: each case prints its name, and the script fails on the first mismatch.
set -u
bin=$1
fail=0
check() {
    expected=$1; shift
    actual=$("$bin" "$@" 2>/dev/null); status=$?
    if [ "$actual" = "$expected" ]; then
        echo "ok   - greet $* -> $actual"
    else
        echo "FAIL - greet $*: expected '$expected', got '$actual' (status $status)" >&2
        fail=1
    fi
}
check "Hello, world!"
check "Hello, release team!" "release team"
check "Hello, \$(x)!" '$(x)'
long=$(printf '%300s' '' | tr ' ' x)
if "$bin" "$long" >/dev/null 2>&1; then
    echo "FAIL - a 300-character name must be refused" >&2; fail=1
else
    echo "ok   - long names are refused"
fi
if [ -n "${GREET_BREAK_TESTS:-}" ]; then
    echo "FAIL - GREET_BREAK_TESTS is set: failing on purpose" >&2; fail=1
fi
exit $fail
