//! Attribute arguments: `name = "..."`, `crate = "..."`, `retry(...)`.

use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, LitStr};

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

/// A value given at most once, remembering where.
pub(crate) struct Attr<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Attr<T> {
    fn none(name: &'static str) -> Self {
        Self { name, value: None }
    }

    fn set(&mut self, meta: &ParseNestedMeta<'_>, value: T) -> syn::Result<()> {
        if self.value.is_some() {
            return Err(meta.error(format!("`{}` is given more than once", self.name)));
        }
        self.value = Some(value);
        Ok(())
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
    pub(crate) given: bool,
}

pub(crate) struct Args {
    pub(crate) name: Attr<LitStr>,
    pub(crate) start_to_close_ms: Attr<u64>,
    pub(crate) heartbeat_timeout_ms: Attr<u64>,
    pub(crate) krate: Attr<syn::Path>,
    pub(crate) retry: RetryArgs,
}

impl Args {
    pub(crate) fn parse(tokens: proc_macro2::TokenStream, allow_retry: bool) -> syn::Result<Self> {
        let mut args = Args {
            name: Attr::none(NAME),
            start_to_close_ms: Attr::none(START_TO_CLOSE),
            heartbeat_timeout_ms: Attr::none(HEARTBEAT_TIMEOUT),
            krate: Attr::none(CRATE),
            retry: RetryArgs {
                max_attempts: Attr::none(MAX_ATTEMPTS),
                first_interval_ms: Attr::none(FIRST_INTERVAL),
                backoff: Attr::none(BACKOFF),
                max_interval_ms: Attr::none(MAX_INTERVAL),
                timeout_ms: Attr::none(TIMEOUT),
                given: false,
            },
        };
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident(NAME) {
                let value: LitStr = meta.value()?.parse()?;
                if value.value().is_empty() {
                    return Err(syn::Error::new(value.span(), "the name must not be empty"));
                }
                args.name.set(&meta, value)
            } else if meta.path.is_ident(CRATE) {
                let value: LitStr = meta.value()?.parse()?;
                let path = value.parse::<syn::Path>()?;
                args.krate.set(&meta, path)
            } else if meta.path.is_ident(START_TO_CLOSE) && allow_retry {
                let value = duration_value(&meta, START_TO_CLOSE)?;
                args.start_to_close_ms.set(&meta, value)
            } else if meta.path.is_ident(HEARTBEAT_TIMEOUT) && allow_retry {
                let value = duration_value(&meta, HEARTBEAT_TIMEOUT)?;
                args.heartbeat_timeout_ms.set(&meta, value)
            } else if meta.path.is_ident(RETRY) && allow_retry {
                if args.retry.given {
                    return Err(meta.error("`retry` is given more than once"));
                }
                args.retry.given = true;
                meta.parse_nested_meta(|inner| parse_retry_field(&mut args.retry, &inner))
            } else {
                let expected = if allow_retry {
                    "`retry(...)`, `start_to_close = \"...\"`, `heartbeat_timeout = \"...\"`, `name = \"...\"` or `crate = \"...\"`"
                } else {
                    "`name = \"...\"` or `crate = \"...\"`"
                };
                Err(meta.error(format!("unknown argument; expected {expected}")))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}

fn parse_retry_field(retry: &mut RetryArgs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.path.is_ident(MAX_ATTEMPTS) {
        let lit: syn::LitInt = meta
            .value()?
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "`max_attempts` takes a whole number, like `max_attempts = 5`"))?;
        let value = lit.base10_parse::<u32>()?;
        retry.max_attempts.set(meta, value)
    } else if meta.path.is_ident(BACKOFF) {
        let expr: Expr = meta.value()?.parse()?;
        let value = match &expr {
            Expr::Lit(ExprLit { lit: Lit::Float(f), .. }) => f.base10_parse::<f64>()?,
            Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<f64>()?,
            _ => return Err(syn::Error::new_spanned(&expr, "`backoff` takes a number, like `backoff = 2.0`")),
        };
        if !(value.is_finite() && value >= 1.0) {
            return Err(syn::Error::new_spanned(&expr, "`backoff` must be at least 1.0"));
        }
        retry.backoff.set(meta, value)
    } else if meta.path.is_ident(FIRST_INTERVAL) {
        let value = duration_value(meta, FIRST_INTERVAL)?;
        retry.first_interval_ms.set(meta, value)
    } else if meta.path.is_ident(MAX_INTERVAL) {
        let value = duration_value(meta, MAX_INTERVAL)?;
        retry.max_interval_ms.set(meta, value)
    } else if meta.path.is_ident(TIMEOUT) {
        let value = duration_value(meta, TIMEOUT)?;
        retry.timeout_ms.set(meta, value)
    } else {
        Err(meta.error(
            "unknown retry setting; expected `max_attempts`, `first_interval`, `backoff`, `max_interval` or `timeout`",
        ))
    }
}

fn duration_value(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<u64> {
    let lit: LitStr = meta
        .value()?
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format!("`{key}` takes a duration string, like `{key} = \"30s\"`")))?;
    parse_duration_ms(&lit.value()).map_err(|reason| syn::Error::new(lit.span(), reason))
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
}
