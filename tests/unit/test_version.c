/* test_version.c -- the one version (include/gtask/gtask.h, read by
 * CMakeLists.txt into project(VERSION)) reaches the library: gtask_version()
 * returns the CMake version, which tests/CMakeLists.txt passes in as
 * GTASK_CMAKE_VERSION, and the header's macros agree with it.  The CLI's
 * `gtask --version` is checked by tests/cmake/check_version.cmake. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#ifndef GTASK_CMAKE_VERSION
#error "tests/CMakeLists.txt defines GTASK_CMAKE_VERSION"
#endif

TEST(version_matches_cmake) {
  ASSERT_NOT_NULL(gtask_version());
  ASSERT_STR_EQ(gtask_version(), GTASK_CMAKE_VERSION);
  ASSERT_STR_EQ(GTASK_VERSION_STRING, GTASK_CMAKE_VERSION);
  char buf[64];
  snprintf(buf, sizeof(buf), "%d.%d.%d", GTASK_VERSION_MAJOR, GTASK_VERSION_MINOR,
           GTASK_VERSION_PATCH);
  ASSERT_STR_EQ(buf, GTASK_CMAKE_VERSION);
  ASSERT_EQ(GTASK_VERSION_NUMBER,
            GTASK_VERSION_MAJOR * 10000 + GTASK_VERSION_MINOR * 100 + GTASK_VERSION_PATCH);
}
