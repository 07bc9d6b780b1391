# Command files added beside the lead's list in cli/CMakeLists.txt (each is added once it exists).
foreach(source chat_store_commands.cpp chat_download_commands.cpp bench_commands.cpp)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${source})
    target_sources(bm_cli PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/${source})
  endif()
endforeach()
