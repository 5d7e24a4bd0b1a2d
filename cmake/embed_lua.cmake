# Turns the Lua scripts in DIR (src/redis/*.lua) into OUT.c and OUT.h: one
# enum value GTASK__LUA_<NAME> per script (NAME = the file name without .lua,
# upper-cased), and the tables gtask__lua_src[] and gtask__lua_name[] indexed
# by it.  Adding a script is adding its file.
#
# A line `-- @include NAME` in a script is replaced by DIR/include/NAME.lua:
# Lua that several scripts share (Redis runs each script alone, so it cannot
# require another).
# Run as: cmake -DOUT=<dir>/lua_scripts -DDIR=src/redis -P embed_lua.cmake
file(GLOB SCRIPTS ${DIR}/*.lua)
list(SORT SCRIPTS)
set(c "/* Generated from the scripts in src/redis by cmake/embed_lua.cmake; do not edit. */\n")
string(APPEND c "#include \"lua_scripts.h\"\n\n")
set(h "/* Generated from the scripts in src/redis by cmake/embed_lua.cmake; do not edit. */\n")
string(APPEND h "#ifndef GTASK_LUA_SCRIPTS_H\n#define GTASK_LUA_SCRIPTS_H\n\n")
string(APPEND h "/* One per script in src/redis/, in file-name order. */\ntypedef enum gtask__script {\n")
set(srcs "")
set(names "")
foreach(script ${SCRIPTS})
  get_filename_component(name ${script} NAME_WE)
  string(TOUPPER ${name} upper)
  file(READ ${script} raw)
  string(REGEX MATCHALL "-- @include [a-z_]+" incs "${raw}")
  foreach(inc ${incs})
    string(REGEX REPLACE "-- @include " "" incname "${inc}")
    if(NOT EXISTS ${DIR}/include/${incname}.lua)
      message(FATAL_ERROR "${script}: ${inc}: no ${DIR}/include/${incname}.lua")
    endif()
    file(READ ${DIR}/include/${incname}.lua incbody)
    string(REPLACE "${inc}\n" "${incbody}" raw "${raw}")
  endforeach()
  string(REPLACE "\\" "\\\\" raw "${raw}")
  string(REPLACE "\"" "\\\"" raw "${raw}")
  string(REPLACE "\n" "\\n\"\n  \"" raw "${raw}")
  string(APPEND c "static const char lua_${name}[] =\n  \"${raw}\";\n")
  string(APPEND h "  GTASK__LUA_${upper},\n")
  string(APPEND srcs "    [GTASK__LUA_${upper}] = lua_${name},\n")
  string(APPEND names "    [GTASK__LUA_${upper}] = \"${name}.lua\",\n")
endforeach()
string(APPEND h "  GTASK__LUA_COUNT\n} gtask__script;\n\n")
string(APPEND h "/* The source of each script, and its file name (for messages). */\n")
string(APPEND h "extern const char *const gtask__lua_src[GTASK__LUA_COUNT];\n")
string(APPEND h "extern const char *const gtask__lua_name[GTASK__LUA_COUNT];\n\n#endif\n")
string(APPEND c "\nconst char *const gtask__lua_src[GTASK__LUA_COUNT] = {\n${srcs}};\n")
string(APPEND c "\nconst char *const gtask__lua_name[GTASK__LUA_COUNT] = {\n${names}};\n")
foreach(ext c h)
  file(WRITE ${OUT}.${ext}.tmp "${${ext}}")
  execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.${ext}.tmp ${OUT}.${ext})
endforeach()
