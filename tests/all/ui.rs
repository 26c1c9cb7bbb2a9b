//! Compile-time checks of the macros: `tests/ui/pass` must compile, `tests/ui/fail` must not,
//! with the committed `.stderr` messages. The failing cases are grouped by topic: `signature`,
//! `args` (attribute arguments), `determinism` (the `#[workflow]` body check) and `call_site`
//! (type errors where the generated helpers are used). The messages do not depend on the enabled
//! features: a type that cannot be a payload is reported as such, without rustc's list of the types
//! that implement `Serialize` (which changes with features), so plain `cargo test` passes too.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}
