//! Compile-time checks of the macros: `tests/ui/pass` must compile, `tests/ui/fail` must not,
//! with the committed `.stderr` messages. The failing cases are grouped by topic: `signature`,
//! `args` (attribute arguments), `determinism` (the `#[workflow]` body check) and `call_site`
//! (type errors where the generated helpers are used). The messages are recorded under `--all-features` (the
//! README's test command): a feature can change the lists of types rustc suggests.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}
