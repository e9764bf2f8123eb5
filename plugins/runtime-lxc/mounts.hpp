#pragma once
// Mount primitives for container root file systems: a read-only squashfs on a loop device,
// an overlay, bind mounts placed safely inside a root that the image controls.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace gantry::lxc {

namespace stdfs = std::filesystem;

// Mount points from /proc/self/mountinfo, in mount order (octal escapes decoded).
Expected<std::vector<std::string>> MountPoints();
Expected<bool> IsMountPoint(const stdfs::path& path);

// Attaches image to a free loop device (read-only, autoclear) and mounts it read-only at
// target; the loop device goes away with the mount.
ExpectedVoid MountSquashfs(const stdfs::path& image, const stdfs::path& target);
// One user namespace mapping: container id `inside` is host id `outside`, for `count` ids.
struct IdRange {
  unsigned inside = 0, outside = 0, count = 0;
};
// "0 100000 65536": three numbers, count > 0, and neither range wrapping around; the host
// range may not include host root (outside 0) since then container root would be host root.
Expected<IdRange> ParseIdRange(const std::string& text);
// liblxc requires that the container's root can search (x) every directory above the
// container: each one of them that others cannot search gets a POSIX ACL entry granting uid
// search only (a directory that already has an ACL is left alone and named in the error).
ExpectedVoid GrantSearch(const stdfs::path& dir, unsigned uid);
// Replaces the mount at target by an idmapped copy of itself (mount_setattr
// MOUNT_ATTR_IDMAP): a file the image's root owns appears owned by range.outside on the host,
// so by root inside a container whose user namespace maps range. Error code "idmap" when the
// kernel or the file system cannot (the caller names the fallback).
ExpectedVoid IdmapMount(const stdfs::path& target, const IdRange& range);
ExpectedVoid MountOverlay(const stdfs::path& lower, const stdfs::path& upper,
                          const stdfs::path& work, const stdfs::path& target);

// Opens (creating as needed, like mkdir -p) the directory rel inside root, resolving every
// component as if root were "/": a symlink in the image cannot lead outside it. Directories
// it creates belong to owner (uid and gid) when one is given, else to the caller.
Expected<fs::Fd> OpenDirInRoot(const stdfs::path& root, const std::string& rel,
                               std::optional<unsigned> owner = std::nullopt);
// Bind-mounts source onto the directory rel inside root (created if missing).
ExpectedVoid BindInRoot(const stdfs::path& source, const stdfs::path& root, const std::string& rel);
// Reads the executable at path inside root (resolved as if root were "/"), and the
// interpreter its "#!" line names, so that their pages are in the page cache: a squashfs
// image is decompressed on first read, which otherwise happens when the container starts.
// Best effort: what cannot be read is left for the start to report.
void WarmInRoot(const stdfs::path& root, const std::string& path);
// Writes a copy of source to rel inside root (mode 0644, parents created), owned by owner
// (uid and gid; the container's root as the host sees it) when one is given.
ExpectedVoid CopyInRoot(const stdfs::path& source, const stdfs::path& root, const std::string& rel,
                        std::optional<unsigned> owner = std::nullopt);

// Unmounts every mount at or below dir, innermost first; fails if one stays.
ExpectedVoid UnmountBelow(const stdfs::path& dir);

// Removes everything inside dir, keeping dir itself (creating it when missing). Never crosses
// into a mount below dir.
ExpectedVoid ClearDir(const stdfs::path& dir);

}  // namespace gantry::lxc
