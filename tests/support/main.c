/* main.c -- main() of the in-tree test binaries: the runner (runner.c) runs
 * the tests their TEST()s registered. */
#include "test.h"

int main(int argc, char **argv) { return test__main(argc, argv); }
