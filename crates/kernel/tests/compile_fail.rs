//! Compile-fail tests of the pte access API: the rules Linux enforces by convention (and by
//! `CONFIG_DEBUG_HIGHMEM` / `might_sleep()` at run time) are enforced here by the types, and
//! these cases prove it so the guarantees cannot rot. See `docs/pte-api-rules.md`.
//!
//! Each `tests/compile_fail/*.rs` must fail to compile with exactly the error recorded in its
//! `.stderr` snapshot; each `tests/compile_pass/*.rs` must compile (the legal patterns).
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p highpte-kernel --test
//! compile_fail`, then read every `.stderr` to check the error is the intended one.

#[test]
fn pte_api_rules() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
    t.pass("tests/compile_pass/*.rs");
}
