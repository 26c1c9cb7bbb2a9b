//! Compile-time checks of the macros: `tests/ui/pass` must compile, `tests/ui/fail` must not,
//! with the committed `.stderr` messages. The messages are recorded under `--all-features` (the
//! README's test command): a feature can change the lists of types rustc suggests.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}
