//! The pvecri-init binary: everything is in the library (`src/lib.rs`).

fn main() {
    pvecri_init::run()
}
