# Shared part of the cross toolchain files: compile with `zig c++` (LLVM clang + its own glibc stubs, libc++ and
# compiler-rt, all built from source for the exact -mcpu). Nothing from the host or a distribution's ARM libraries
# is linked in, so an armv6 module cannot pick up armv7 code from a Debian armhf libstdc++/libc.
# Caller sets ONNXSTREAM_ZIG_ARCH (zig's arch), ONNXSTREAM_ZIG_CPU (zig's -mcpu) and CMAKE_SYSTEM_PROCESSOR.
# -DONNXSTREAM_ZIG_LIBC=musl builds static musl executables instead (kernel tests that run under QEMU
# without a target sysroot); the default links against glibc 2.28 symbols (manylinux_2_28 / Pi OS Buster+).

set(CMAKE_SYSTEM_NAME Linux)
set(ONNXSTREAM_ZIG_LIBC "gnu" CACHE STRING "zig target ABI: gnu (glibc, for the wheel) or musl (static test binaries)")
set(ONNXSTREAM_GLIBC_VERSION "2.28" CACHE STRING "oldest glibc the module links against")
set(CMAKE_TRY_COMPILE_PLATFORM_VARIABLES ONNXSTREAM_ZIG_ARCH ONNXSTREAM_ZIG_CPU ONNXSTREAM_ZIG_LIBC
    ONNXSTREAM_GLIBC_VERSION ONNXSTREAM_ZIG)

# The zig binary: $ZIG, else the one inside the `ziglang` wheel of the Python running the build, else PATH.
if(NOT ONNXSTREAM_ZIG)
  if(DEFINED ENV{ZIG})
    set(ONNXSTREAM_ZIG "$ENV{ZIG}")
  else()
    find_program(_zig_python NAMES python3 python)
    execute_process(COMMAND ${_zig_python} -c "import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))"
                    OUTPUT_VARIABLE _zig OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
    if(_rc EQUAL 0 AND EXISTS "${_zig}")
      set(ONNXSTREAM_ZIG "${_zig}")
    else()
      find_program(ONNXSTREAM_ZIG zig)
    endif()
  endif()
  if(NOT ONNXSTREAM_ZIG)
    message(FATAL_ERROR "zig not found: pip install ziglang, or set ZIG=/path/to/zig")
  endif()
  set(ONNXSTREAM_ZIG "${ONNXSTREAM_ZIG}" CACHE FILEPATH "zig compiler" FORCE)
endif()

if(ONNXSTREAM_ZIG_LIBC STREQUAL "musl")
  if(ONNXSTREAM_ZIG_ARCH STREQUAL "aarch64")
    set(_triple "aarch64-linux-musl")
  else()
    set(_triple "${ONNXSTREAM_ZIG_ARCH}-linux-musleabihf")
  endif()
else()
  if(ONNXSTREAM_ZIG_ARCH STREQUAL "aarch64")
    set(_triple "aarch64-linux-gnu.${ONNXSTREAM_GLIBC_VERSION}")
  else()
    set(_triple "${ONNXSTREAM_ZIG_ARCH}-linux-gnueabihf.${ONNXSTREAM_GLIBC_VERSION}")
  endif()
endif()

# CMake wants one executable per tool, so write tiny wrappers around `zig c++|cc|ar|ranlib` into a cache dir.
if(DEFINED ENV{ONNXSTREAM_CACHE})
  set(_wrappers "$ENV{ONNXSTREAM_CACHE}/zig-wrappers/${_triple}-${ONNXSTREAM_ZIG_CPU}")
else()
  set(_wrappers "$ENV{HOME}/.cache/onnxstream/zig-wrappers/${_triple}-${ONNXSTREAM_ZIG_CPU}")
endif()
foreach(_tool c++ cc ar ranlib)
  set(_text "#!/bin/sh\nexec \"${ONNXSTREAM_ZIG}\" ${_tool} \"$@\"\n")
  if(_tool STREQUAL "c++" OR _tool STREQUAL "cc")
    set(_text "#!/bin/sh\nexec \"${ONNXSTREAM_ZIG}\" ${_tool} -target ${_triple} -mcpu=${ONNXSTREAM_ZIG_CPU} \"$@\"\n")
  endif()
  file(WRITE "${_wrappers}/zig-${_tool}.tmp" "${_text}")
  file(COPY_FILE "${_wrappers}/zig-${_tool}.tmp" "${_wrappers}/zig-${_tool}" ONLY_IF_DIFFERENT)
  file(CHMOD "${_wrappers}/zig-${_tool}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
       WORLD_READ WORLD_EXECUTE)
endforeach()

set(CMAKE_C_COMPILER "${_wrappers}/zig-cc")
set(CMAKE_CXX_COMPILER "${_wrappers}/zig-c++")
set(CMAKE_AR "${_wrappers}/zig-ar" CACHE FILEPATH "archiver" FORCE)
set(CMAKE_RANLIB "${_wrappers}/zig-ranlib" CACHE FILEPATH "ranlib" FORCE)
if(ONNXSTREAM_ZIG_LIBC STREQUAL "musl")
  set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
endif()

# Never look for libraries or headers on the build machine; Python headers come in through Python_INCLUDE_DIR.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)  # pybind11's CMake config is arch-independent
