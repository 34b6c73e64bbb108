//! Builds the libtorch calls tch does not wrap (src/libtorch.cpp) against libtorch's headers, after
//! the link settings every crate of the workspace takes (build/libtorch_link.rs).
use std::env;
use std::path::Path;

#[path = "../../build/libtorch_link.rs"]
mod libtorch_link;

fn main() {
    libtorch_link::main();
    compile_extras();
}

fn compile_extras() {
    let Ok(lib_dir) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = Path::new(&lib_dir);
    println!("cargo:rerun-if-changed=src/libtorch.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Some(include) = lib.parent().map(|torch| torch.join("include")) else {
        return;
    };
    cc::Build::new()
        .cpp(true)
        .file("src/libtorch.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!(
            "-D_GLIBCXX_USE_CXX11_ABI={}",
            env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned())
        ))
        .warnings(false)
        .compile("reid_libtorch");
}
