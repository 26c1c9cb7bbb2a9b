//! Compile-time checks of the macros: `tests/ui/pass` must compile, `tests/ui/fail` must not,
//! with the committed `.stderr` messages.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*/*.rs");
}
