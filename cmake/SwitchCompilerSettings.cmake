# Compiler settings shared by every target of ours: C++17, ccache when present, and
# warnings as errors on our own code (sw_warnings), never on generated or third-party code.
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

find_program(SW_CCACHE ccache)
if(SW_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SW_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${SW_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${SW_CCACHE})
endif()

# Eigen's kernels are several times faster with AVX2 and FMA than with SSE2 alone, and
# Eigen chooses its vector width at compile time: a portable build targets SW_CPU_BASELINE
# (x86-64-v3 by default), a local build (SW_NATIVE_ARCH) this machine. BLIS, under the GEMM
# tiles, picks its kernels for the CPU it runs on either way.
if(SW_NATIVE_ARCH)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native>)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64)$")
  set(_sw_baselines x86-64 x86-64-v2 x86-64-v3 x86-64-v4)
  if(NOT SW_CPU_BASELINE IN_LIST _sw_baselines)
    message(FATAL_ERROR "SW_CPU_BASELINE: unknown level '${SW_CPU_BASELINE}' (one of: ${_sw_baselines})")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=${SW_CPU_BASELINE}>)
endif()

function(sw_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
    # GCC 12 reports false maybe-uninitialized warnings inside Eigen's AVX-512 kernels.
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra -Werror=all-warnings>)
endfunction()

# Sanitizers for every target, in a build directory of their own (scripts/test-sanitizers
# builds with SW_SANITIZE=address,undefined): any report stops the program.
set(SW_SANITIZE "" CACHE STRING "Sanitizers for every target, e.g. address,undefined")
if(SW_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=${SW_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-sanitize-recover=all>)
  add_link_options(-fsanitize=${SW_SANITIZE})
endif()
# libFuzzer targets for every parser (tests/fuzz): clang only; every target of ours is
# instrumented for coverage so the fuzzers see inside the parsers.
option(SW_BUILD_FUZZERS "Build tests/fuzz as libFuzzer binaries (clang)" OFF)
if(SW_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SW_BUILD_FUZZERS needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=fuzzer-no-link>)
endif()
