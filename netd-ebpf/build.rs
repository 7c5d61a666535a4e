//! Rebuild the kernel object when `bpf-linker` changes.
//!
//! The eBPF build links with `bpf-linker`, an undeclared dependency cargo
//! cannot track; without this, replacing bpf-linker (e.g. one built against a
//! different LLVM) would keep serving a stale object. Keyed on the binary's
//! path/mtime, as aya-template does.
use which::which;

fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found in PATH - install it with `cargo install bpf-linker` \
         (see TOOLCHAIN.md: it must be built against the same LLVM major as rustc)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
