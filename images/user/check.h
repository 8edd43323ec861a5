/* The test programs' checks: one line each, "ok: WHAT" or "FAIL: WHAT",
 * and a closing verdict whose status the program exits with. */
#include <stdio.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    if (!ok)
        failures++;
}

/* Prints "NAME: all checks passed" or "NAME: N checks failed"; returns
 * the exit status (0 or 1). */
static int verdict(const char *name)
{
    if (failures) {
        printf("%s: %d checks failed\n", name, failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}
