# Turns the Lua scripts in DIR into a C file OUT that defines one
# `const char gtask__lua_NAME[]` per script (NAME = file name without .lua).
# Run as: cmake -DOUT=... -DDIR=src/redis -P embed_lua.cmake
file(GLOB SCRIPTS ${DIR}/*.lua)
list(SORT SCRIPTS)
set(content "/* Generated from the src/redis Lua scripts by cmake/embed_lua.cmake; do not edit. */\n")
foreach(script ${SCRIPTS})
  get_filename_component(name ${script} NAME_WE)
  file(READ ${script} body)
  string(REPLACE "\\" "\\\\" body "${body}")
  string(REPLACE "\"" "\\\"" body "${body}")
  string(REPLACE "\n" "\\n\"\n  \"" body "${body}")
  string(APPEND content "const char gtask__lua_${name}[] =\n  \"${body}\";\n")
endforeach()
file(WRITE ${OUT}.tmp "${content}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
