# check_version.cmake -- `gtask --version` and `gtask version` print exactly
# "gtask <the CMake project version>" and exit 0; with --json, the version as
# JSON.  Run by ctest (test "version"):
#   cmake -DGTASK=path/to/gtask -DEXPECTED=0.1.0 -P check_version.cmake
foreach(args "--version" "version" "--json;--version" "version;--json")
  execute_process(COMMAND ${GTASK} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(args MATCHES "json")
    set(want "{\"version\":\"${EXPECTED}\"}\n")
  else()
    set(want "gtask ${EXPECTED}\n")
  endif()
  if(NOT rc EQUAL 0 OR NOT out STREQUAL want OR NOT err STREQUAL "")
    message(FATAL_ERROR "gtask ${args}: exit ${rc}, printed \"${out}\" (stderr \"${err}\");"
                        " expected exit 0 and \"${want}\"")
  endif()
endforeach()
message(STATUS "gtask --version: gtask ${EXPECTED}")
