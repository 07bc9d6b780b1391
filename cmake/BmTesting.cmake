find_package(GTest CONFIG REQUIRED)
include(GoogleTest)

# bm_add_unit_test(<name> SOURCES a_test.cpp ... LIBS lib ...)
# One executable per component; tests find shared/models through BMSERVER_SHARED_MODELS (an environment
# variable, not a compile definition, so ccache hits across clones).
function(bm_add_unit_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest_main GTest::gmock bm_warnings)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  # ctest's ENVIRONMENT property keeps only the first of several variables when set through
  # gtest_discover_tests, so the test binaries run under `env VAR=... binary` instead (also at discovery).
  set_target_properties(${name} PROPERTIES CROSSCOMPILING_EMULATOR
    "/usr/bin/env;BMSERVER_SHARED_MODELS=${BMSERVER_SHARED_MODELS_DIR};BMSERVER_SHARED_DIR=${BMSERVER_SHARED_MODELS_DIR}/..;BMSERVER_SOURCE_DIR=${CMAKE_SOURCE_DIR};BMSERVER_BUILD_DIR=${CMAKE_BINARY_DIR};BMSERVER_PYTHON=${BMSERVER_PYTHON}")
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60)
endfunction()
