//! Finds liblxc with pkg-config and generates bindings over `../wrapper.h`.
//!
//! Only link logic and binding generation live here: no behaviour.

use std::env;
use std::path::PathBuf;

/// liblxc 5.0 is Debian 12's version; Proxmox VE ships lxc-pve 6.0.x.
const LXC_MIN: &str = "5.0";
const LXC_MAX_EXCLUSIVE: &str = "7.0";
/// OpenZFS 2.x (Debian 12: 2.1.11; Proxmox VE 8: 2.2.x).
const ZFS_MIN: &str = "2.0";
const ZFS_MAX_EXCLUSIVE: &str = "3.0";

fn main() {
    println!("cargo:rerun-if-changed=../wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");

    let lxc = match pkg_config::Config::new()
        .range_version(LXC_MIN..LXC_MAX_EXCLUSIVE)
        .probe("lxc")
    {
        Ok(lib) => lib,
        Err(err) => {
            eprintln!(
                "lxc-sys: liblxc >= {LXC_MIN}, < {LXC_MAX_EXCLUSIVE} was not found by pkg-config: {err}\n\
                 lxc-sys: install the development files: `apt-get install lxc-dev pkg-config` \
                 (on Proxmox VE: `apt-get install lxc-pve-dev` or build against lxc-pve's headers)"
            );
            std::process::exit(1);
        }
    };

    let mut include_paths = lxc.include_paths.clone();
    let mut builder = bindgen::Builder::default()
        .header("../wrapper.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("lxc_container_new")
        .allowlist_function("lxc_container_get")
        .allowlist_function("lxc_container_put")
        .allowlist_function("lxc_get_version")
        .allowlist_function("lxc_get_global_config_item")
        .allowlist_function("lxc_config_item_is_supported")
        .allowlist_function("lxc_has_api_extension")
        .allowlist_function("lxc_attach_run_command")
        .allowlist_type("lxc_container")
        .allowlist_type("lxc_attach_options_t")
        .allowlist_type("lxc_attach_command_t")
        .allowlist_var("LXC_ATTACH_.*")
        .allowlist_var("LXC_VERSION.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false);

    if env::var_os("CARGO_FEATURE_ZFS").is_some() {
        // libzfs_core.pc also links libnvpair (there is no libnvpair.pc).
        // OpenZFS 2.x: the lzc_* calls and channel programs pvecri uses
        // are all there from 2.0 on (Debian 12 has 2.1, Proxmox VE 8 2.2).
        match pkg_config::Config::new()
            .range_version(ZFS_MIN..ZFS_MAX_EXCLUSIVE)
            .probe("libzfs_core")
        {
            Ok(lib) => {
                println!("cargo:rustc-env=PVECRI_LIBZFS_CORE_VERSION={}", lib.version);
                include_paths.extend(lib.include_paths);
            }
            Err(err) => {
                eprintln!(
                    "lxc-sys: feature `zfs` needs libzfs_core >= {ZFS_MIN}, < {ZFS_MAX_EXCLUSIVE} \
                     from pkg-config: {err}\n\
                     lxc-sys: install Debian's `libzfslinux-dev` (component `contrib`)"
                );
                std::process::exit(1);
            }
        }
        builder = builder
            .clang_arg("-DPVECRI_ZFS")
            .allowlist_function("libzfs_core_(init|fini)")
            .allowlist_function("lzc_(create|clone|snapshot|destroy|destroy_snaps|rename|exists|channel_program_nosync)")
            .allowlist_function("fnvlist_(alloc|free|add_string|add_string_array|add_boolean)")
            .allowlist_function("nvlist_(next_nvpair|lookup_nvlist|lookup_string)")
            .allowlist_function("nvpair_(name|type|value_int64|value_uint64|value_string|value_nvlist)")
            .allowlist_type("data_type_t")
            .allowlist_type("lzc_dataset_type")
            .rustified_enum("lzc_dataset_type");
    }

    for path in &include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }

    let bindings = builder
        .generate()
        .expect("lxc-sys: bindgen failed to generate bindings over wrapper.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("lxc-sys: could not write bindings.rs");
}
