//! Parse: the attribute's arguments, `name = "..."` and `crate = "..."` for both macros,
//! `concurrency = N`, `rate = "N/period"`, `concurrency(limit = N, key = ...)` and
//! `rate(limit = "N/period", key = ...)` for both, `priority = N` for `#[workflow]`, and
//! `retry(...)`, `start_to_close = "..."` and `heartbeat_timeout = "..."` for `#[activity]`.
//! Every mistake is collected, so one build reports all of them.

use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, LitStr, Token};

use crate::errors::Errors;
use crate::expand::Kind;

const NAME: &str = "name";
const CRATE: &str = "crate";
const RETRY: &str = "retry";
const MAX_ATTEMPTS: &str = "max_attempts";
const FIRST_INTERVAL: &str = "first_interval";
const BACKOFF: &str = "backoff";
const MAX_INTERVAL: &str = "max_interval";
const TIMEOUT: &str = "timeout";
const START_TO_CLOSE: &str = "start_to_close";
const HEARTBEAT_TIMEOUT: &str = "heartbeat_timeout";
const PRIORITY: &str = "priority";
const CONCURRENCY: &str = "concurrency";
const LIMIT: &str = "limit";
const RATE: &str = "rate";
const KEY: &str = "key";

/// The arguments only `#[activity]` takes, named in the message when a workflow is given one.
const ACTIVITY_ONLY: &[&str] = &[RETRY, START_TO_CLOSE, HEARTBEAT_TIMEOUT];

/// A value given at most once.
pub(crate) struct Attr<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Attr<T> {
    fn none(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// The one place that reports "set more than once".
    fn set(&mut self, meta: &ParseNestedMeta<'_>, value: T, errors: &mut Errors) {
        if self.value.is_some() {
            errors.push(meta.error(format!("`{}` is given more than once: keep one", self.name)));
            return;
        }
        self.value = Some(value);
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }
}

/// The retry policy written in the attribute; unset fields keep `RetryPolicy::default()`'s.
pub(crate) struct RetryArgs {
    pub(crate) max_attempts: Attr<u32>,
    pub(crate) first_interval_ms: Attr<u64>,
    pub(crate) backoff: Attr<f64>,
    pub(crate) max_interval_ms: Attr<u64>,
    pub(crate) timeout_ms: Attr<u64>,
}

pub(crate) struct Args {
    pub(crate) name: Attr<LitStr>,
    pub(crate) start_to_close_ms: Attr<u64>,
    pub(crate) heartbeat_timeout_ms: Attr<u64>,
    pub(crate) krate: Attr<syn::Path>,
    pub(crate) priority: Attr<i32>,
    pub(crate) concurrency: Attr<u32>,
    /// `concurrency(key = ...)`: an expression that is a `fn(&Input) -> String` (a closure that
    /// captures nothing, or a path), checked by the compiler where it is expanded.
    pub(crate) concurrency_key: Attr<Expr>,
    /// `rate = "N/period"` or `rate(limit = "N/period", key = ...)`: (N, period in ms).
    pub(crate) rate: Attr<(u32, i64)>,
    retry_given: Attr<()>,
    pub(crate) retry: RetryArgs,
}

impl Args {
    pub(crate) fn parse(tokens: proc_macro2::TokenStream, kind: Kind) -> syn::Result<Self> {
        let mut args = Args {
            name: Attr::none(NAME),
            start_to_close_ms: Attr::none(START_TO_CLOSE),
            heartbeat_timeout_ms: Attr::none(HEARTBEAT_TIMEOUT),
            krate: Attr::none(CRATE),
            priority: Attr::none(PRIORITY),
            concurrency: Attr::none(CONCURRENCY),
            concurrency_key: Attr::none(KEY),
            rate: Attr::none(RATE),
            retry_given: Attr::none(RETRY),
            retry: RetryArgs {
                max_attempts: Attr::none(MAX_ATTEMPTS),
                first_interval_ms: Attr::none(FIRST_INTERVAL),
                backoff: Attr::none(BACKOFF),
                max_interval_ms: Attr::none(MAX_INTERVAL),
                timeout_ms: Attr::none(TIMEOUT),
            },
        };
        let mut errors = Errors::default();
        let parser = syn::meta::parser(|meta| args.parse_one(kind, &meta, &mut errors));
        let parsed = syn::parse::Parser::parse2(parser, tokens);
        errors.extend(parsed);
        errors.finish(args)
    }

    fn parse_one(&mut self, kind: Kind, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let activity = kind == Kind::Activity;
        if meta.path.is_ident(NAME) {
            if let Some(lit) = string_value(meta, NAME, "name = \"charge-card\"", errors)? {
                if lit.value().is_empty() {
                    errors.spanned(&lit, "the name must not be empty: write `name = \"...\"`, or leave `name` out to use the function's name");
                } else {
                    self.name.set(meta, lit, errors);
                }
            }
        } else if meta.path.is_ident(CRATE) {
            if let Some(lit) = string_value(meta, CRATE, "crate = \"::workflow\"", errors)? {
                match lit.parse::<syn::Path>() {
                    Ok(path) => self.krate.set(meta, path, errors),
                    Err(_) => errors.spanned(
                        &lit,
                        format!(
                            "`crate` takes the path of the `workflow` crate, like `crate = \"::workflow\"`, found `{}`",
                            lit.value()
                        ),
                    ),
                }
            }
        } else if !activity && meta.path.is_ident(PRIORITY) {
            if let Some(priority) = int_value(meta, PRIORITY, "priority = 10", errors)? {
                self.priority.set(meta, priority, errors);
            }
        } else if meta.path.is_ident(CONCURRENCY) {
            if meta.input.peek(syn::token::Paren) {
                let usage = KeyedLimit {
                    setting: CONCURRENCY,
                    expected: "`limit = N` and, for a cap per key",
                    missing:
                        "`concurrency(...)` needs `limit = N`, like `concurrency(limit = 2, key = |order: &Order| \
                              order.tenant.clone())`",
                };
                let limit = |inner: &ParseNestedMeta<'_>, errors: &mut Errors| {
                    concurrency_limit(inner, LIMIT, "limit = 2", kind, errors)
                };
                keyed_limit(meta, &usage, &mut self.concurrency, &mut self.concurrency_key, errors, limit)?;
            } else if let Some(n) = concurrency_limit(meta, CONCURRENCY, "concurrency = 4", kind, errors)? {
                self.concurrency.set(meta, n, errors);
            }
        } else if meta.path.is_ident(RATE) {
            if meta.input.peek(syn::token::Paren) {
                let usage = KeyedLimit {
                    setting: RATE,
                    expected: "`limit = \"N/period\"` and, for a limit per key",
                    missing: "`rate(...)` needs `limit = \"N/period\"`, like `rate(limit = \"5/1s\", key = ...)`",
                };
                let limit = |inner: &ParseNestedMeta<'_>, errors: &mut Errors| {
                    rate_value(inner, LIMIT, "limit = \"5/1s\"", errors)
                };
                keyed_limit(meta, &usage, &mut self.rate, &mut self.concurrency_key, errors, limit)?;
            } else if let Some(value) = rate_value(meta, RATE, "rate = \"50/1s\"", errors)? {
                self.rate.set(meta, value, errors);
            }
        } else if activity && meta.path.is_ident(START_TO_CLOSE) {
            if let Some(ms) = duration_value(meta, START_TO_CLOSE, errors)? {
                self.start_to_close_ms.set(meta, ms, errors);
            }
        } else if activity && meta.path.is_ident(HEARTBEAT_TIMEOUT) {
            if let Some(ms) = duration_value(meta, HEARTBEAT_TIMEOUT, errors)? {
                self.heartbeat_timeout_ms.set(meta, ms, errors);
            }
        } else if activity && meta.path.is_ident(RETRY) {
            if !meta.input.peek(syn::token::Paren) {
                errors.push(meta.error(
                    "`retry` takes its settings in parentheses, like `retry(max_attempts = 5, first_interval = \"1s\")`",
                ));
                return skip_value(meta);
            }
            self.retry_given.set(meta, (), errors);
            let retry = &mut self.retry;
            meta.parse_nested_meta(|inner| retry.parse_one(&inner, errors))?;
        } else {
            let key = path_text(&meta.path);
            let message = if activity && key == PRIORITY {
                "`priority` applies to `#[workflow]`: an instance's priority orders the claims of \
                 instances; activity attempts are not prioritised yet"
                    .to_owned()
            } else if !activity && ACTIVITY_ONLY.contains(&key.as_str()) {
                format!(
                    "`{key}` applies to `#[activity]`, not `#[workflow]`: a workflow is replayed, never retried \
                     or timed out; set it on the activities the workflow calls"
                )
            } else if activity {
                format!(
                    "unknown argument `{key}` of `#[activity]`: expected `retry(...)`, `start_to_close = \"...\"`, \
                     `heartbeat_timeout = \"...\"`, `concurrency = N`, `concurrency(limit = N, key = ...)`, \
                     `rate = \"N/period\"`, `rate(limit = \"N/period\", key = ...)`, \
                     `name = \"...\"` or `crate = \"...\"`"
                )
            } else {
                format!(
                    "unknown argument `{key}` of `#[workflow]`: expected `name = \"...\"`, `priority = N`, \
                     `concurrency = N`, `concurrency(limit = N, key = ...)`, `rate = \"N/period\"`, \
                     `rate(limit = \"N/period\", key = ...)` or `crate = \"...\"`"
                )
            };
            errors.push(meta.error(message));
            skip_value(meta)?;
        }
        Ok(())
    }
}

impl RetryArgs {
    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        if meta.path.is_ident(MAX_ATTEMPTS) {
            let Some(expr) = value_expr(meta, MAX_ATTEMPTS, "max_attempts = 5", errors)? else { return Ok(()) };
            let usage =
                format!("`max_attempts` takes a whole number, like `max_attempts = 5`, found `{}`", text(&expr));
            match literal(&expr) {
                Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
                    Ok(0) => errors.spanned(int, "`max_attempts` counts the first attempt, so it must be at least 1"),
                    Ok(n) => self.max_attempts.set(meta, n, errors),
                    Err(_) => errors.spanned(int, "`max_attempts` must fit in a `u32`"),
                },
                _ => errors.spanned(&expr, usage),
            }
        } else if meta.path.is_ident(BACKOFF) {
            let Some(expr) = value_expr(meta, BACKOFF, "backoff = 2.0", errors)? else { return Ok(()) };
            let value = match literal(&expr) {
                Some(Lit::Float(f)) => f.base10_parse::<f64>().ok(),
                Some(Lit::Int(i)) => i.base10_parse::<f64>().ok(),
                _ => None,
            };
            match value {
                None => errors
                    .spanned(&expr, format!("`backoff` takes a number, like `backoff = 2.0`, found `{}`", text(&expr))),
                Some(value) if !(value.is_finite() && value >= 1.0) => {
                    errors.spanned(&expr, "`backoff` must be at least 1.0 (1.0 keeps the interval fixed)")
                }
                Some(value) => self.backoff.set(meta, value, errors),
            }
        } else if meta.path.is_ident(FIRST_INTERVAL) {
            if let Some(ms) = duration_value(meta, FIRST_INTERVAL, errors)? {
                self.first_interval_ms.set(meta, ms, errors);
            }
        } else if meta.path.is_ident(MAX_INTERVAL) {
            if let Some(ms) = duration_value(meta, MAX_INTERVAL, errors)? {
                self.max_interval_ms.set(meta, ms, errors);
            }
        } else if meta.path.is_ident(TIMEOUT) {
            if let Some(ms) = duration_value(meta, TIMEOUT, errors)? {
                self.timeout_ms.set(meta, ms, errors);
            }
        } else {
            errors.push(meta.error(format!(
                "unknown retry setting `{}`: expected `max_attempts`, `first_interval`, `backoff`, `max_interval` or \
                 `timeout`",
                path_text(&meta.path)
            )));
            skip_value(meta)?;
        }
        Ok(())
    }
}

/// The expression after `key =`, or `None` after reporting that the value is missing.
fn value_expr(meta: &ParseNestedMeta<'_>, key: &str, example: &str, errors: &mut Errors) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        errors.push(meta.error(format!("`{key}` takes a value: write `{example}`")));
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse()?))
}

fn string_value(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    let Some(expr) = value_expr(meta, key, example, errors)? else { return Ok(None) };
    match literal(&expr) {
        Some(Lit::Str(lit)) => Ok(Some(lit.clone())),
        _ => {
            errors.spanned(&expr, format!("`{key}` takes a string, like `{example}`, found `{}`", text(&expr)));
            Ok(None)
        }
    }
}

/// How one of an activity's per-key limits (`concurrency(...)`, `rate(...)`) is written, for its
/// messages.
struct KeyedLimit {
    /// The argument's name.
    setting: &'static str,
    /// The settings it takes before the key, named when another one is given.
    expected: &'static str,
    /// The message when `limit` is missing.
    missing: &'static str,
}

/// The settings inside `concurrency(...)` or `rate(...)`: `limit = ...`, read by `limit` into
/// `slot`, and `key = ...` into the activity's one key (given twice, it is reported as such).
fn keyed_limit<T>(
    meta: &ParseNestedMeta<'_>,
    usage: &KeyedLimit,
    slot: &mut Attr<T>,
    key: &mut Attr<Expr>,
    errors: &mut Errors,
    limit: impl Fn(&ParseNestedMeta<'_>, &mut Errors) -> syn::Result<Option<T>>,
) -> syn::Result<()> {
    let mut given = false;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident(LIMIT) {
            given = true;
            if let Some(value) = limit(&inner, errors)? {
                slot.set(&inner, value, errors);
            }
        } else if inner.path.is_ident(KEY) {
            if let Some(expr) = value_expr(&inner, KEY, "key = |input: &Order| input.tenant.clone()", errors)? {
                key.set(&inner, expr, errors);
            }
        } else {
            errors.push(inner.error(format!(
                "unknown setting `{}` of `{}(...)`: expected {}, `key = |input: &Input| ...` (or the path of a \
                 `fn(&Input) -> String`)",
                path_text(&inner.path),
                usage.setting,
                usage.expected
            )));
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    if !given {
        errors.push(meta.error(usage.missing));
    }
    Ok(())
}

/// A concurrency cap (`concurrency = N`, or `limit = N` inside `concurrency(...)`): a whole
/// number of at least 1 that fits a `u32`, or `None` after reporting what is wrong.
fn concurrency_limit(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: &str,
    kind: Kind,
    errors: &mut Errors,
) -> syn::Result<Option<u32>> {
    let Some(expr) = value_expr(meta, key, example, errors)? else { return Ok(None) };
    let what = if kind == Kind::Activity { "attempts of the activity" } else { "instances" };
    match literal(&expr) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(0) => {
                errors.spanned(
                    int,
                    format!("`{key}` is the most {what} that run at once, so it must be at least 1 (leave it out for no cap)"),
                );
                Ok(None)
            }
            Ok(limit) => Ok(Some(limit)),
            Err(_) => {
                errors.spanned(int, format!("`{key}` must fit in a `u32`"));
                Ok(None)
            }
        },
        _ => {
            errors.spanned(&expr, format!("`{key}` takes a whole number, like `{example}`, found `{}`", text(&expr)));
            Ok(None)
        }
    }
}

/// A rate, `"N/period"` (like `"50/1s"` or `"10000/1d"`): N at least 1 and fitting a `u32`, the
/// period a duration of at least 1 ms; or `None` after reporting what is wrong.
fn rate_value(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<(u32, i64)>> {
    let Some(expr) = value_expr(meta, key, example, errors)? else { return Ok(None) };
    let Some(Lit::Str(lit)) = literal(&expr) else {
        errors.spanned(&expr, format!("`{key}` takes a rate string, like `{example}`, found `{}`", text(&expr)));
        return Ok(None);
    };
    match parse_rate(&lit.value()) {
        Ok(rate) => Ok(Some(rate)),
        Err(reason) => {
            errors.spanned(lit, reason);
            Ok(None)
        }
    }
}

/// Parses `"N/period"`.
pub(crate) fn parse_rate(text: &str) -> Result<(u32, i64), String> {
    let usage = "write a rate as starts per period, like \"50/1s\", \"100/1m\" or \"10000/1d\"";
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a rate; {usage}"));
    };
    let count: u32 = match count.trim().parse() {
        Ok(0) => return Err(format!("`{text}` allows no start at all: the count must be at least 1; {usage}")),
        Ok(count) => count,
        Err(_) => {
            return Err(format!("`{}` is not a whole number of starts (up to {}); {usage}", count.trim(), u32::MAX))
        }
    };
    let ms = parse_duration_ms(period)?;
    if ms == 0 {
        return Err(format!("`{text}` has an empty period; {usage}"));
    }
    let ms = i64::try_from(ms).map_err(|_| format!("`{text}` has a period too long"))?;
    Ok((count, ms))
}

/// An `i32` literal (negative too), or `None` after reporting what is wrong.
fn int_value(meta: &ParseNestedMeta<'_>, key: &str, example: &str, errors: &mut Errors) -> syn::Result<Option<i32>> {
    let Some(expr) = value_expr(meta, key, example, errors)? else { return Ok(None) };
    let (negative, inner) = match &expr {
        Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), expr: inner, .. }) => (true, inner.as_ref()),
        other => (false, other),
    };
    let Some(Lit::Int(lit)) = literal(inner) else {
        errors.spanned(&expr, format!("`{key}` takes an integer, like `{example}`, found `{}`", text(&expr)));
        return Ok(None);
    };
    let digits = format!("{}{}", if negative { "-" } else { "" }, lit.base10_digits());
    match digits.parse::<i32>() {
        Ok(value) => Ok(Some(value)),
        Err(_) => {
            errors.spanned(&expr, format!("`{key}` must fit in an i32 ({} to {}), found {digits}", i32::MIN, i32::MAX));
            Ok(None)
        }
    }
}

fn duration_value(meta: &ParseNestedMeta<'_>, key: &str, errors: &mut Errors) -> syn::Result<Option<u64>> {
    let example = format!("{key} = \"30s\"");
    let Some(expr) = value_expr(meta, key, &example, errors)? else { return Ok(None) };
    let Some(Lit::Str(lit)) = literal(&expr) else {
        errors.spanned(&expr, format!("`{key}` takes a duration string, like `{example}`, found `{}`", text(&expr)));
        return Ok(None);
    };
    match parse_duration_ms(&lit.value()) {
        Ok(ms) => Ok(Some(ms)),
        Err(reason) => {
            errors.spanned(lit, reason);
            Ok(None)
        }
    }
}

/// The literal an expression is, looking through the invisible groups `macro_rules!` adds.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

/// Consumes what follows an argument that was rejected, so the ones after it are still checked.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: proc_macro2::TokenStream = content.parse()?;
    }
    Ok(())
}

fn path_text(path: &syn::Path) -> String {
    path.segments.iter().map(|segment| segment.ident.to_string()).collect::<Vec<_>>().join("::")
}

fn text(expr: &Expr) -> String {
    quote::ToTokens::to_token_stream(expr).to_string()
}

/// Parses "500ms", "30s", "1m", "2h", "1d" and sums like "1h30m" into milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let usage = "write a duration like \"500ms\", \"30s\", \"1m\", \"2h\", \"1d\" or \"1h30m\"";
    if text.trim().is_empty() {
        return Err(format!("empty duration; {usage}"));
    }
    let mut total: u64 = 0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration; {usage}"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("`{text}` has a number without a unit; {usage}")),
            other => return Err(format!("unknown unit `{other}` in `{text}`; {usage}")),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;
    use super::Args;
    use crate::expand::Kind;

    #[test]
    fn rates() {
        assert_eq!(super::parse_rate("50/1s"), Ok((50, 1_000)));
        assert_eq!(super::parse_rate("10000/1d"), Ok((10_000, 86_400_000)));
        assert_eq!(super::parse_rate(" 3 / 1m30s"), Ok((3, 90_000)));
        for bad in ["50", "0/1s", "x/1s", "5/0s", "5/", "5/1", "99999999999/1s"] {
            assert!(super::parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("5 weeks").is_err());
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("ms").is_err());
    }

    fn messages(kind: Kind, tokens: proc_macro2::TokenStream) -> Vec<String> {
        match Args::parse(tokens, kind) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn arguments() {
        let ok = Args::parse(
            quote::quote!(retry(max_attempts = 3, backoff = 1), start_to_close = "1s", name = "x"),
            Kind::Activity,
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.retry.max_attempts.get(), Some(&3));
        assert_eq!(ok.start_to_close_ms.get(), Some(&1000));
        assert_eq!(ok.name.get().map(|lit| lit.value()).as_deref(), Some("x"));
    }

    #[test]
    fn every_mistake_is_reported() {
        let all = messages(
            Kind::Activity,
            quote::quote!(retry(max_attempts = "x", bogus = 1), name = "a", name = "b", colour = "red"),
        );
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(all[0].starts_with("`max_attempts` takes a whole number"), "{all:?}");
        assert!(all[1].starts_with("unknown retry setting `bogus`"), "{all:?}");
        assert!(all[2].starts_with("`name` is given more than once"), "{all:?}");
        assert!(all[3].starts_with("unknown argument `colour`"), "{all:?}");
        let workflow = messages(Kind::Workflow, quote::quote!(retry(max_attempts = 2)));
        assert_eq!(workflow.len(), 1);
        assert!(workflow[0].starts_with("`retry` applies to `#[activity]`"), "{workflow:?}");
        let missing = messages(Kind::Workflow, quote::quote!(name));
        assert!(missing[0].starts_with("`name` takes a value"), "{missing:?}");
    }
}
