add_library(bm_warnings INTERFACE)
target_compile_options(bm_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
# Boost 1.74 Asio under GCC 12 / C++20 needs <utility> before it (reference/build-spike.md, pitfall 3).
add_library(bm_boost_asio INTERFACE)
target_link_libraries(bm_boost_asio INTERFACE Boost::headers Threads::Threads)
target_compile_options(bm_boost_asio INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-include utility>)
