# The Debian package: `cmake --build --preset release --target package`, or deploy/package.sh BUILD_DIR (which
# builds only what goes into it). Binaries under /usr/bin, the CUDA plugin (when built) under /usr/lib/bmserver,
# the systemd unit, /etc/bmserver/bmserverd.toml, maintainer scripts that create the bmserver user and group and
# enable the service (deploy/debian/). docs/install.md tells the story.
include(GNUInstallDirs)

# The service files only go into the package (component "service"): `cmake --install build --prefix /usr/local`
# of a developer build installs the binaries alone.
install(FILES ${CMAKE_SOURCE_DIR}/deploy/bmserverd.service DESTINATION lib/systemd/system COMPONENT service
        EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/bmserverd.toml DESTINATION /etc/bmserver COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/debian/copyright ${CMAKE_SOURCE_DIR}/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT service EXCLUDE_FROM_ALL)
# Debian wants the changelog and the manual pages compressed, reproducibly (gzip -n).
foreach(doc changelog bmserver.1 bmserverd.8)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/package/${doc}.gz
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/package
                     COMMAND gzip -9n -c ${CMAKE_SOURCE_DIR}/deploy/debian/${doc} > ${CMAKE_BINARY_DIR}/package/${doc}.gz
                     DEPENDS ${CMAKE_SOURCE_DIR}/deploy/debian/${doc})
endforeach()
add_custom_target(bm_package_docs ALL DEPENDS ${CMAKE_BINARY_DIR}/package/changelog.gz
                                              ${CMAKE_BINARY_DIR}/package/bmserver.1.gz
                                              ${CMAKE_BINARY_DIR}/package/bmserverd.8.gz)
install(FILES ${CMAKE_BINARY_DIR}/package/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT service
        EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_BINARY_DIR}/package/bmserver.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT service
        EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_BINARY_DIR}/package/bmserverd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT service
        EXCLUDE_FROM_ALL)
file(GLOB BM_PACKAGE_DOCS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${BM_PACKAGE_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs COMPONENT service EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME bmserver)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "BMServer maintainers <maintainers@bmserver.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "serves large chat models behind an OpenAI-compatible API")
set(CPACK_PACKAGE_DESCRIPTION
    "bmserverd keeps chat models (Hugging Face or ModelScope cache, or a local\n"
    "folder), serves them behind an OpenAI-compatible HTTP API on its own engine\n"
    "(CPU, and NVIDIA GPUs through a CUDA plugin) and benchmarks them; bmserver\n"
    "is its command-line client.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# One package holding the default install and the service component.
set(CPACK_COMPONENTS_ALL Unspecified service)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/yansh97/bmserver")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/deploy/debian/postinst ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
                                       ${CMAKE_SOURCE_DIR}/deploy/debian/postrm ${CMAKE_SOURCE_DIR}/deploy/debian/conffiles)
# Depends: dpkg-shlibdeps over the binaries, at packaging time (deploy/debian/package_depends.cmake), not CPack's
# own SHLIBDEPS: that one also walks the CUDA plugin, whose libcublasLt and libnccl come from NVIDIA's toolkit,
# which no Debian package provides, and fails.
set(BM_PACKAGE_BINARIES ${CMAKE_BINARY_DIR}/bin/bmserverd ${CMAKE_BINARY_DIR}/bin/bmserver)
configure_file(${CMAKE_SOURCE_DIR}/deploy/debian/package_depends.cmake.in ${CMAKE_BINARY_DIR}/BmPackageDepends.cmake
               @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/BmPackageDepends.cmake)
include(CPack)
