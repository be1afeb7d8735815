/*
 * The C headers that the lxc-sys crate binds (see sys/build.rs).
 * This file is the single list of what pvecri pulls in from C libraries.
 */
#include <lxc/lxccontainer.h>
#include <lxc/attach_options.h>
#include <lxc/version.h>

#ifdef PVECRI_ZFS
#include <libzfs_core.h>
#include <libnvpair.h>
#endif
