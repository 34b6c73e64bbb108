//! The build script of every crate of the workspace (reid-core's calls it from its own): link-time
//! settings for libtorch, so the binary, the tests and the benchmarks run without any environment
//! set by hand — an rpath to the libtorch directory, and `libtorch_cuda.so` kept in the NEEDED list
//! when it exists (the linker would otherwise drop it as unused and CUDA would silently be
//! unavailable) — and the libtorch version `doctor` reports. Link arguments apply only to the crate
//! whose script prints them, hence one script for all; a crate using it depends on torch-sys
//! directly, which is what gives its script `DEP_TCH_LIBTORCH_LIB`.
use std::env;
use std::path::Path;

pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = Path::new(&lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib_dir}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // The wheel's torch/version.py holds `__version__ = '2.13.0+cu130'`; `doctor` reports it.
    let version = lib
        .parent()
        .map(|torch| torch.join("version.py"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim_matches(['\'', '"']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=REID_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=REID_LIBTORCH_LIB={lib_dir}");
}
