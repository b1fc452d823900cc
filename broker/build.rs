//! `sqlx::migrate!` embeds the migration folders when `store/mod.rs` is compiled, and cargo does
//! not watch them by itself: without this, a migration added to the tree is missing from an
//! incremental build.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
