# `cmake --install`: libswitch.so and its C and C++ headers (capi/CMakeLists.txt), a
# find_package(libswitch) config exporting libswitch::switch, and libswitch.pc.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(EXPORT libswitchTargets NAMESPACE libswitch::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libswitch)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/libswitchConfig.cmake.in
  ${PROJECT_BINARY_DIR}/libswitchConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libswitch)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/libswitchConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/libswitchConfig.cmake ${PROJECT_BINARY_DIR}/libswitchConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/libswitch)

# The .pc file finds its prefix relative to itself, so the install can move.
file(RELATIVE_PATH SW_PC_PREFIX_FROM_PCDIR "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
     "${CMAKE_INSTALL_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/libswitch.pc.in ${PROJECT_BINARY_DIR}/libswitch.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/libswitch.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
