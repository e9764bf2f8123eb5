# Install layout and the Debian package (cpack -G DEB), included at the end of the top-level
# CMakeLists.txt. gantryd, the plugins (lib/gantry/plugins = the config's plugin_dir) and the
# schemas install themselves where they are defined; this file adds the rest.
#
#   cmake --build build && (cd build && cpack -G DEB)   # → gantry_<version>_<arch>.deb

# `make install` and cpack install what is built instead of first building every target (tests,
# fuzzers, benchmarks included): build, then package.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)

if(TARGET gantryctl)
  install(TARGETS gantryctl DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# Absolute on purpose: a package puts the unit and the configuration where systemd and the
# unit's ExecStart look, whatever the prefix.
install(FILES ${CMAKE_SOURCE_DIR}/systemd/gantryd.service DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/examples/config/gantryd.json DESTINATION /etc/gantry
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
# trust.keys_dir of the shipped configuration: the operator copies public keys here.
install(DIRECTORY DESTINATION /etc/gantry/keys)

# Man pages, gzip'd as Debian policy wants them (gzip -n: no name or time, reproducible), and
# the documents under /usr/share/doc/gantry (the README, docs/*.md).
find_program(GANTRY_GZIP gzip REQUIRED)
set(_gantry_man_gz)
foreach(page gantryctl.1 gantryd.8)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" _section ${page})
  set(_src ${CMAKE_SOURCE_DIR}/docs/man/${page})
  set(_gz ${CMAKE_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${_gz}
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
                     COMMAND ${CMAKE_COMMAND} -E copy ${_src} ${CMAKE_BINARY_DIR}/man/${page}
                     COMMAND ${GANTRY_GZIP} -9nf ${CMAKE_BINARY_DIR}/man/${page}
                     DEPENDS ${_src} VERBATIM)
  list(APPEND _gantry_man_gz ${_gz})
  install(FILES ${_gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
endforeach()
add_custom_target(gantry_man ALL DEPENDS ${_gantry_man_gz})
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
        FILES_MATCHING PATTERN "*.md" PATTERN man EXCLUDE)

# dpkg keeps an operator's edits of a conffile across upgrades and asks before replacing it.
file(WRITE ${CMAKE_BINARY_DIR}/packaging/conffiles "/etc/gantry/gantryd.json\n")

set(CPACK_PACKAGE_NAME gantry)
set(CPACK_PACKAGE_VENDOR "Gantry")
set(CPACK_PACKAGE_CONTACT "Gantry maintainers <gantry@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "MQTT-driven edge gateway update agent: signed, transactional LXC container updates")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "Gantry maintainers <gantry@example.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)
# Debian 12 runtime libraries of what we link (Paho C++ pulls in Paho C), plus the tools the
# agent and the LXC runtime run: lxc (lxc-utils, AppArmor profiles) and squashfs-tools.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libpaho-mqttpp3-1, libpaho-mqtt1.3, liblxc1, libcurl4, libsqlite3-0, libssl3, libsystemd0, libcoap3, libcpp-httplib0.11, lxc, squashfs-tools")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/packaging/conffiles)
set(CPACK_GENERATOR DEB)
include(CPack)
