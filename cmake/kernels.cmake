# Microkernels: cpp/kernels/<family>/<name>-<isa>[-<core>].cc. The ISA token ending each file name (before an
# optional core token such as cortex-a53) decides whether the file is built for this target and with which flags;
# no other source gets ISA flags. Sets ONNXSTREAM_KERNEL_SOURCES and
# ONNXSTREAM_KERNEL_DEFINITIONS (ONNXSTREAM_KERNELS_<ISA> per ISA list built, read by kernels/microkernels.h).
file(GLOB ONNXSTREAM_ALL_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../cpp/kernels/*/*.cc)

string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _cpu)
set(_isas scalar)
if(_cpu MATCHES "^(x86_64|amd64|x64|i.86)$")
  list(APPEND _isas avx2-fma avx512f)
elseif(_cpu MATCHES "^(aarch64|arm64)")
  list(APPEND _isas aarch64-neonfma)
elseif(_cpu MATCHES "^armv7|^arm$")
  list(APPEND _isas neon)
endif()  # armv6 and others: scalar only

set(_flags_scalar "")
set(_flags_neon -mfpu=neon-vfpv4)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND _flags_neon -mfp16-format=ieee)  # GCC needs it for vcvt_f32_f16; clang (zig) is IEEE already
endif()
set(_flags_aarch64-neonfma "")
set(_flags_avx2-fma -mavx2 -mfma -mf16c)
set(_flags_avx512f -mavx512f -mfma -mf16c)

set(ONNXSTREAM_KERNEL_SOURCES "")
set(ONNXSTREAM_KERNEL_DEFINITIONS "")
foreach(_isa IN LISTS _isas)
  set(_files ${ONNXSTREAM_ALL_KERNELS})
  list(FILTER _files INCLUDE REGEX "-${_isa}(-cortex-a[0-9]+)?\\.cc$")
  if(_flags_${_isa})
    set_source_files_properties(${_files} PROPERTIES COMPILE_OPTIONS "${_flags_${_isa}}")
  endif()
  list(APPEND ONNXSTREAM_KERNEL_SOURCES ${_files})
  string(TOUPPER "${_isa}" _def)
  string(REPLACE "-" "_" _def "${_def}")
  list(APPEND ONNXSTREAM_KERNEL_DEFINITIONS ONNXSTREAM_KERNELS_${_def}=1)
endforeach()
