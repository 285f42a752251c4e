//! The `lean` build has no libc of its own: `memcpy`, `memcmp` and the like come from the
//! toolchain's wasi-libc archive (only those functions; they import nothing from WASI).

fn main() {
    if std::env::var_os("CARGO_FEATURE_LEAN").is_some() {
        println!("cargo:rustc-link-arg=-lc");
    }
}
