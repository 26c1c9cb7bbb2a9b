//! Check: a `#[workflow]` body is replayed from its journal, so it must not call APIs whose
//! result a replay cannot reproduce (the clock, timers, task spawns, randomness, the process
//! environment, I/O). Each call is a compile error that names the `ctx` alternative.
//!
//! Paths are matched by what the macro can see: a path's own segments, plus the `use` items
//! written inside the body (aliases, renames and globs). `use` items elsewhere in the module are
//! invisible to an attribute macro, so a bare `sleep(d)` or `spawn(f)` is flagged only when the
//! body itself imports it. Arguments of function-like macros are checked when they parse as a
//! comma-separated list of expressions (`println!`, `format!`, `assert!`, `futures::join!`, ...);
//! other macro bodies are not.
//!
//! The opt-out is a statement (or match arm) attribute, `#[nondeterministic(reason = "...")]`,
//! that skips its statement and is removed before the function is emitted.

use std::collections::HashMap;

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Expr, ItemFn, Stmt, Token};

use crate::errors::Errors;
use crate::expand::Kind;

/// The opt-out attribute, written on a statement inside a `#[workflow]` body.
const MARKER: &str = "nondeterministic";

/// What a matched API does wrong in a workflow; decides the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hazard {
    Clock,
    ChronoClock,
    Instant,
    Elapsed,
    Sleep,
    ThreadSleep,
    SleepUntil,
    Interval,
    Timeout,
    Spawn,
    ThreadSpawn,
    Random,
    Uuid,
    Env,
    Io,
    Select,
}

/// How a rule matches a (resolved) path.
enum Pattern {
    /// The path ends with these segments: `SystemTime::now` matches `std::time::SystemTime::now`.
    Ends(&'static [&'static str]),
    /// The path starts with the crate and ends with the function, anything between:
    /// `("tokio", "spawn")` matches `tokio::spawn` and `tokio::task::spawn`.
    CrateFn(&'static str, &'static str),
    /// Any function (a lowercase last segment) under the module: `std::fs::read`,
    /// `reqwest::Client::new`; constants and variants like `reqwest::StatusCode::OK` pass.
    Module(&'static [&'static str]),
}

use Hazard::*;
use Pattern::*;

/// Every rule, in the order they are tried.
const RULES: &[(Pattern, Hazard)] = &[
    (Ends(&["SystemTime", "now"]), Clock),
    (Ends(&["OffsetDateTime", "now_utc"]), Clock),
    (Ends(&["OffsetDateTime", "now_local"]), Clock),
    (Ends(&["Utc", "now"]), ChronoClock),
    (Ends(&["Local", "now"]), ChronoClock),
    (Ends(&["Instant", "now"]), Instant),
    (Ends(&["Instant", "elapsed"]), Elapsed),
    (Ends(&["SystemTime", "elapsed"]), Elapsed),
    (Ends(&["thread", "sleep"]), ThreadSleep),
    (Ends(&["time", "sleep"]), Sleep),
    (CrateFn("tokio", "sleep"), Sleep),
    (Ends(&["time", "sleep_until"]), SleepUntil),
    (CrateFn("tokio", "sleep_until"), SleepUntil),
    (Ends(&["time", "interval"]), Interval),
    (Ends(&["time", "interval_at"]), Interval),
    (CrateFn("tokio", "interval"), Interval),
    (CrateFn("tokio", "interval_at"), Interval),
    (Ends(&["time", "timeout"]), Timeout),
    (Ends(&["time", "timeout_at"]), Timeout),
    (CrateFn("tokio", "timeout"), Timeout),
    (CrateFn("tokio", "timeout_at"), Timeout),
    (Ends(&["thread", "spawn"]), ThreadSpawn),
    (Ends(&["thread", "scope"]), ThreadSpawn),
    (Ends(&["thread", "Builder", "new"]), ThreadSpawn),
    (Ends(&["task", "spawn"]), Spawn),
    (Ends(&["task", "spawn_blocking"]), Spawn),
    (Ends(&["task", "spawn_local"]), Spawn),
    (CrateFn("tokio", "spawn"), Spawn),
    (CrateFn("tokio", "spawn_blocking"), Spawn),
    (CrateFn("tokio", "spawn_local"), Spawn),
    (CrateFn("rand", "random"), Random),
    (CrateFn("rand", "random_range"), Random),
    (CrateFn("rand", "random_bool"), Random),
    (CrateFn("rand", "random_ratio"), Random),
    (CrateFn("rand", "random_iter"), Random),
    (CrateFn("rand", "rng"), Random),
    (CrateFn("rand", "fill"), Random),
    (Ends(&["thread_rng"]), Random),
    (Ends(&["OsRng"]), Random),
    (Ends(&["from_entropy"]), Random),
    (Ends(&["from_os_rng"]), Random),
    (Module(&["getrandom"]), Random),
    (Ends(&["Uuid", "new_v4"]), Uuid),
    (Ends(&["Uuid", "now_v1"]), Uuid),
    (Ends(&["Uuid", "now_v6"]), Uuid),
    (Ends(&["Uuid", "now_v7"]), Uuid),
    (Ends(&["env", "var"]), Env),
    (Ends(&["env", "var_os"]), Env),
    (Ends(&["env", "vars"]), Env),
    (Ends(&["env", "vars_os"]), Env),
    (Ends(&["env", "args"]), Env),
    (Ends(&["env", "args_os"]), Env),
    (Ends(&["env", "current_dir"]), Env),
    (Module(&["std", "fs"]), Io),
    (Module(&["tokio", "fs"]), Io),
    (Module(&["fs"]), Io),
    (Ends(&["File", "open"]), Io),
    (Ends(&["File", "create"]), Io),
    (Ends(&["File", "create_new"]), Io),
    (Ends(&["File", "options"]), Io),
    (Ends(&["OpenOptions", "new"]), Io),
    (Ends(&["io", "stdin"]), Io),
    (Ends(&["TcpStream", "connect"]), Io),
    (Ends(&["TcpListener", "bind"]), Io),
    (Ends(&["UdpSocket", "bind"]), Io),
    (Ends(&["net", "lookup_host"]), Io),
    (Ends(&["process", "Command", "new"]), Io),
    (Module(&["reqwest"]), Io),
    (Module(&["ureq"]), Io),
    (Module(&["sqlx"]), Io),
];

/// The rule a fully written path falls under.
pub(crate) fn classify<S: AsRef<str>>(path: &[S]) -> Option<Hazard> {
    let path: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    let last = *path.last()?;
    RULES.iter().find_map(|(pattern, hazard)| {
        let hit = match pattern {
            Ends(ends) => path.ends_with(ends),
            CrateFn(krate, name) => path.len() >= 2 && path[0] == *krate && last == *name,
            Module(module) => {
                path.len() > module.len()
                    && path.starts_with(module)
                    && last.starts_with(|c: char| c.is_ascii_lowercase())
            }
        };
        hit.then_some(*hazard)
    })
}

/// What `use` items inside the body bring into scope.
#[derive(Default)]
pub(crate) struct Scope {
    /// A name to the path it stands for: `Clock` for `use std::time::SystemTime as Clock;`.
    aliases: HashMap<String, Vec<String>>,
    /// The modules of `use a::b::*;`.
    globs: Vec<Vec<String>>,
}

impl Scope {
    fn add(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.add(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) if name.ident == "self" => {
                if let Some(last) = prefix.last() {
                    self.aliases.insert(last.clone(), prefix.clone());
                }
            }
            syn::UseTree::Name(name) => {
                let mut full = prefix.clone();
                full.push(name.ident.to_string());
                self.aliases.insert(name.ident.to_string(), full);
            }
            syn::UseTree::Rename(rename) => {
                if rename.rename == "_" {
                    return;
                }
                let mut full = prefix.clone();
                if rename.ident != "self" {
                    full.push(rename.ident.to_string());
                }
                self.aliases.insert(rename.rename.to_string(), full);
            }
            syn::UseTree::Glob(_) => self.globs.push(prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.add(prefix, tree);
                }
            }
        }
    }

    /// The hazard of a path as written, and the full path when a `use` in the body renamed it.
    pub(crate) fn resolve(&self, written: &[String]) -> Option<(Hazard, Option<Vec<String>>)> {
        let first = written.first()?;
        if let Some(target) = self.aliases.get(first) {
            let mut full = target.clone();
            full.extend(written[1..].iter().cloned());
            if let Some(hazard) = classify(&full) {
                return Some((hazard, (full != written).then_some(full)));
            }
        }
        if let Some(hazard) = classify(written) {
            return Some((hazard, None));
        }
        self.globs.iter().find_map(|module| {
            let mut full = module.clone();
            full.extend(written.iter().cloned());
            classify(&full).map(|hazard| (hazard, Some(full)))
        })
    }
}

/// Collects the `use` items anywhere in the body (scopes are not told apart).
struct Uses<'a>(&'a mut Scope);

impl<'ast> Visit<'ast> for Uses<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.0.add(&mut Vec::new(), &item.tree);
    }
}

/// Checks a `#[workflow]` body and removes the opt-out attributes from it; in an `#[activity]`
/// the attribute is reported, since an activity may do anything.
pub(crate) fn check(kind: Kind, function: &mut ItemFn) -> syn::Result<()> {
    let mut scope = Scope::default();
    Uses(&mut scope).visit_block(&function.block);
    let mut lint = Lint { kind, scope, errors: Errors::default(), opted_out: 0 };
    lint.visit_block_mut(&mut function.block);
    lint.errors.finish(())
}

struct Lint {
    kind: Kind,
    scope: Scope,
    errors: Errors,
    /// How many opted-out nodes enclose the current one; their insides are walked only to
    /// remove nested opt-outs.
    opted_out: u32,
}

impl Lint {
    fn checking(&self) -> bool {
        self.kind == Kind::Workflow && self.opted_out == 0
    }

    /// Walks a node, without checking it when it carried an opt-out.
    fn walk(&mut self, skip: bool, walk: impl FnOnce(&mut Self)) {
        self.opted_out += u32::from(skip);
        walk(self);
        self.opted_out -= u32::from(skip);
    }

    /// Removes the opt-out attributes; true when the node carried one (and is then not checked).
    fn take_opt_outs(&mut self, attrs: &mut Vec<Attribute>) -> bool {
        let before = attrs.len();
        let mut found = Vec::new();
        attrs.retain(|attr| {
            let marker = attr.path().is_ident(MARKER);
            if marker {
                found.push(attr.clone());
            }
            !marker
        });
        for attr in &found {
            if self.kind == Kind::Activity {
                self.errors.spanned(
                    attr,
                    "`#[nondeterministic]` is only for `#[workflow]` bodies: an `#[activity]` runs once per attempt \
                     and may be non-deterministic, so remove it",
                );
            } else if let Err(error) = check_reason(attr) {
                self.errors.push(error);
            }
        }
        attrs.len() != before
    }

    fn report(&mut self, span_of: impl ToTokens, written: &[String], hazard: Hazard, full: Option<Vec<String>>) {
        let mut shown = format!("`{}`", written.join("::"));
        if let Some(full) = full {
            shown.push_str(&format!(" (`{}`)", full.join("::")));
        }
        self.errors.spanned(span_of, message(hazard, &shown, written));
    }

    fn check_path(&mut self, expr: &syn::ExprPath) {
        let mut written: Vec<String> = Vec::new();
        if let Some(qself) = &expr.qself {
            // `<SystemTime>::now()`: the type's path comes first.
            if let syn::Type::Path(ty) = &*qself.ty {
                written.extend(ty.path.segments.iter().map(|s| s.ident.to_string()));
            }
        }
        written.extend(expr.path.segments.iter().map(|s| s.ident.to_string()));
        if let Some((hazard, full)) = self.scope.resolve(&written) {
            self.report(expr, &written, hazard, full);
        }
    }

    /// Checks the arguments of a function-like macro when they parse as expressions.
    fn check_macro(&mut self, mac: &syn::Macro) {
        let written: Vec<String> = mac.path.segments.iter().map(|s| s.ident.to_string()).collect();
        let last = written.last().map(String::as_str);
        let select_crate = written.len() == 1 || matches!(written[0].as_str(), "tokio" | "futures");
        if matches!(last, Some("select" | "select_biased")) && select_crate {
            let mut shown = written.clone();
            if let Some(last) = shown.last_mut() {
                last.push('!');
            }
            self.report(&mac.path, &shown, Select, None);
            return;
        }
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        if let Ok(args) = mac.parse_body_with(parser) {
            for mut arg in args {
                self.visit_expr_mut(&mut arg);
            }
        }
    }
}

/// `#[nondeterministic(reason = "...")]` with a reason that is not empty.
fn check_reason(attr: &Attribute) -> syn::Result<()> {
    let usage = "`#[nondeterministic]` needs a reason: write `#[nondeterministic(reason = \"...\")]`, saying why \
                 a replay cannot tell the difference";
    let syn::Meta::List(list) = &attr.meta else { return Err(syn::Error::new_spanned(attr, usage)) };
    let mut reason = None;
    list.parse_nested_meta(|meta| {
        if meta.path.is_ident("reason") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            reason = Some(lit);
            Ok(())
        } else {
            Err(meta.error(usage))
        }
    })
    .map_err(|_| syn::Error::new_spanned(attr, usage))?;
    match reason {
        Some(lit) if !lit.value().trim().is_empty() => Ok(()),
        _ => Err(syn::Error::new_spanned(attr, usage)),
    }
}

/// The attributes of an expression, when it can carry them.
fn expr_attrs(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match expr {
        Expr::Array(e) => &mut e.attrs,
        Expr::Assign(e) => &mut e.attrs,
        Expr::Async(e) => &mut e.attrs,
        Expr::Await(e) => &mut e.attrs,
        Expr::Binary(e) => &mut e.attrs,
        Expr::Block(e) => &mut e.attrs,
        Expr::Break(e) => &mut e.attrs,
        Expr::Call(e) => &mut e.attrs,
        Expr::Cast(e) => &mut e.attrs,
        Expr::Closure(e) => &mut e.attrs,
        Expr::Const(e) => &mut e.attrs,
        Expr::Continue(e) => &mut e.attrs,
        Expr::Field(e) => &mut e.attrs,
        Expr::ForLoop(e) => &mut e.attrs,
        Expr::Group(e) => &mut e.attrs,
        Expr::If(e) => &mut e.attrs,
        Expr::Index(e) => &mut e.attrs,
        Expr::Infer(e) => &mut e.attrs,
        Expr::Let(e) => &mut e.attrs,
        Expr::Lit(e) => &mut e.attrs,
        Expr::Loop(e) => &mut e.attrs,
        Expr::Macro(e) => &mut e.attrs,
        Expr::Match(e) => &mut e.attrs,
        Expr::MethodCall(e) => &mut e.attrs,
        Expr::Paren(e) => &mut e.attrs,
        Expr::Path(e) => &mut e.attrs,
        Expr::Range(e) => &mut e.attrs,
        Expr::RawAddr(e) => &mut e.attrs,
        Expr::Reference(e) => &mut e.attrs,
        Expr::Repeat(e) => &mut e.attrs,
        Expr::Return(e) => &mut e.attrs,
        Expr::Struct(e) => &mut e.attrs,
        Expr::Try(e) => &mut e.attrs,
        Expr::TryBlock(e) => &mut e.attrs,
        Expr::Tuple(e) => &mut e.attrs,
        Expr::Unary(e) => &mut e.attrs,
        Expr::Unsafe(e) => &mut e.attrs,
        Expr::While(e) => &mut e.attrs,
        Expr::Yield(e) => &mut e.attrs,
        _ => return None,
    })
}

/// True for an item that another of our macros will check itself.
fn is_ours(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().segments.last().is_some_and(|segment| segment.ident == "activity" || segment.ident == "workflow")
    })
}

impl VisitMut for Lint {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let attrs = match stmt {
            Stmt::Local(local) => Some(&mut local.attrs),
            Stmt::Macro(mac) => Some(&mut mac.attrs),
            Stmt::Expr(expr, _) => expr_attrs(expr),
            Stmt::Item(_) => None,
        };
        let skip = attrs.is_some_and(|attrs| self.take_opt_outs(attrs));
        self.walk(skip, |lint| visit_mut::visit_stmt_mut(lint, stmt));
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        let skip = expr_attrs(expr).is_some_and(|attrs| self.take_opt_outs(attrs));
        self.walk(skip, |lint| visit_mut::visit_expr_mut(lint, expr));
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        let skip = self.take_opt_outs(&mut arm.attrs);
        self.walk(skip, |lint| visit_mut::visit_arm_mut(lint, arm));
    }

    fn visit_item_fn_mut(&mut self, item: &mut ItemFn) {
        if !is_ours(&item.attrs) {
            visit_mut::visit_item_fn_mut(self, item);
        }
    }

    fn visit_expr_path_mut(&mut self, expr: &mut syn::ExprPath) {
        if self.checking() {
            self.check_path(expr);
        }
        visit_mut::visit_expr_path_mut(self, expr);
    }

    fn visit_expr_method_call_mut(&mut self, call: &mut syn::ExprMethodCall) {
        if self.checking() && call.method == "elapsed" && call.args.is_empty() {
            self.errors.spanned(&call.method, message(Elapsed, "`.elapsed()`", &[]));
        }
        visit_mut::visit_expr_method_call_mut(self, call);
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        if self.checking() {
            self.check_macro(mac);
        }
    }
}

/// Says what is wrong with the API shown (already in backticks) and what to write instead.
fn message(hazard: Hazard, shown: &str, written: &[String]) -> String {
    let replay = "a replay of this `#[workflow]`";
    // `Utc` or `Local`, for chrono's conversion.
    let zone = written.len().checked_sub(2).and_then(|i| written.get(i)).map_or("Utc", String::as_str);
    match hazard {
        Clock => format!(
            "{shown} reads the system clock, so {replay} would see another time: use `ctx.now()`, which is recorded \
             in the journal"
        ),
        ChronoClock => format!(
            "{shown} reads the system clock, so {replay} would see another time: use `ctx.now()`, which is recorded \
             in the journal, and convert it with `DateTime::<{zone}>::from(ctx.now())`"
        ),
        Instant => format!(
            "{shown} reads the system clock, so {replay} would measure something else: use `ctx.now()`, which is \
             recorded in the journal, and `duration_since` between two readings"
        ),
        Elapsed => format!(
            "{shown} reads the system clock, so {replay} would measure something else: take two `ctx.now()` \
             readings and subtract them with `duration_since`"
        ),
        Sleep => format!(
            "{shown} is not a durable timer: a restart forgets it and {replay} waits again; use \
             `ctx.sleep(duration).await`"
        ),
        ThreadSleep => {
            format!("{shown} blocks the worker thread and is not a durable timer: use `ctx.sleep(duration).await`")
        }
        SleepUntil => format!(
            "{shown} is not a durable timer: a restart forgets it and {replay} waits again; use \
             `ctx.sleep_until(time).await` with a `SystemTime`"
        ),
        Interval => format!(
            "{shown} ticks on the system clock, which the journal does not record: loop over \
             `ctx.sleep(period).await` instead"
        ),
        Timeout => format!(
            "{shown} times out on the system clock, so {replay} could decide differently: race the operation \
             against a durable timer with `ctx.race(operation, ctx.sleep(duration)).await`"
        ),
        Spawn => format!(
            "{shown} starts a task the journal does not record, so {replay} cannot reproduce it: await durable \
             operations together instead, with `my_activity::fan_out(&ctx, inputs)`, `ctx.race(a, b)` or \
             `futures::join!(a.into_future(), b.into_future())`, and move other work into an `#[activity]`"
        ),
        ThreadSpawn => format!(
            "{shown} starts a thread the journal does not record, so {replay} cannot reproduce it: await durable \
             operations together instead, with `my_activity::fan_out(&ctx, inputs)`, `ctx.race(a, b)` or \
             `futures::join!(a.into_future(), b.into_future())`, and move blocking work into an `#[activity]`"
        ),
        Random => format!(
            "{shown} draws other numbers on every run, so {replay} would take other decisions: use `ctx.random()`, \
             which is recorded in the journal"
        ),
        Uuid => format!(
            "{shown} makes another id on every run, so {replay} would see a different one: use `ctx.uuid()`, which \
             is recorded in the journal"
        ),
        Env => format!(
            "{shown} reads the process environment, which can differ when another worker replays this \
             `#[workflow]`: read it in an `#[activity]`, or pass it in the workflow's input"
        ),
        Io => format!(
            "{shown} does I/O, which {replay} would repeat and could see change: move it into an `#[activity]` \
             and call that"
        ),
        Select => format!(
            "{shown} picks a branch the journal does not record, so {replay} can take another one: use \
             `ctx.race(a, b)`, which records the winner"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split("::").map(str::to_owned).collect()
    }

    #[test]
    fn suffixes_match_however_the_path_is_written() {
        assert_eq!(classify(&path("SystemTime::now")), Some(Clock));
        assert_eq!(classify(&path("std::time::SystemTime::now")), Some(Clock));
        assert_eq!(classify(&path("time::Instant::now")), Some(Instant));
        assert_eq!(classify(&path("chrono::Utc::now")), Some(ChronoClock));
        assert_eq!(classify(&path("Local::now")), Some(ChronoClock));
        assert_eq!(classify(&path("std::thread::sleep")), Some(ThreadSleep));
        assert_eq!(classify(&path("tokio::time::sleep")), Some(Sleep));
        assert_eq!(classify(&path("time::sleep")), Some(Sleep));
        assert_eq!(classify(&path("tokio::time::sleep_until")), Some(SleepUntil));
        assert_eq!(classify(&path("tokio::time::interval")), Some(Interval));
        assert_eq!(classify(&path("tokio::time::timeout")), Some(Timeout));
        assert_eq!(classify(&path("tokio::spawn")), Some(Spawn));
        assert_eq!(classify(&path("tokio::task::spawn_blocking")), Some(Spawn));
        assert_eq!(classify(&path("std::thread::spawn")), Some(ThreadSpawn));
        assert_eq!(classify(&path("rand::random")), Some(Random));
        assert_eq!(classify(&path("rand::prelude::random")), Some(Random));
        assert_eq!(classify(&path("rand::thread_rng")), Some(Random));
        assert_eq!(classify(&path("thread_rng")), Some(Random));
        assert_eq!(classify(&path("rand::rng")), Some(Random));
        assert_eq!(classify(&path("uuid::Uuid::new_v4")), Some(Uuid));
        assert_eq!(classify(&path("std::env::var")), Some(Env));
        assert_eq!(classify(&path("env::var_os")), Some(Env));
        assert_eq!(classify(&path("std::fs::read_to_string")), Some(Io));
        assert_eq!(classify(&path("fs::write")), Some(Io));
        assert_eq!(classify(&path("tokio::fs::File::open")), Some(Io));
        assert_eq!(classify(&path("File::open")), Some(Io));
        assert_eq!(classify(&path("reqwest::get")), Some(Io));
        assert_eq!(classify(&path("reqwest::Client::new")), Some(Io));
    }

    #[test]
    fn messages_name_the_alternative() {
        let local = message(ChronoClock, "`Local::now`", &path("chrono::Local::now"));
        assert!(local.contains("`DateTime::<Local>::from(ctx.now())`"), "{local}");
        assert!(message(Sleep, "`sleep`", &path("sleep")).contains("`ctx.sleep(duration).await`"));
        assert!(message(Uuid, "`Uuid::new_v4`", &path("Uuid::new_v4")).contains("`ctx.uuid()`"));
        assert!(message(Random, "`rand::random`", &path("rand::random")).contains("`ctx.random()`"));
        assert!(message(Io, "`std::fs::read`", &path("std::fs::read")).contains("`#[activity]`"));
    }

    #[test]
    fn deterministic_paths_pass() {
        for ok in [
            "now",
            "sleep",
            "spawn",
            "random",
            "rng",
            "interval",
            "Duration::from_secs",
            "SystemTime::UNIX_EPOCH",
            "std::time::UNIX_EPOCH",
            "Instant",
            "my_activity::call",
            "sleep::call",
            "random::call",
            "tokio::join",
            "rand::rngs::StdRng::seed_from_u64",
            "reqwest::StatusCode::OK",
            "std::fs",
            "reqwest",
            "env::consts::OS",
            "futures::future::join_all",
            "Uuid::parse_str",
            "Command::new",
            "std::net::Ipv4Addr::new",
        ] {
            assert_eq!(classify(&path(ok)), None, "{ok}");
        }
    }

    fn scope(uses: &[&str]) -> Scope {
        let mut scope = Scope::default();
        for text in uses {
            let item: syn::ItemUse = syn::parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            scope.add(&mut Vec::new(), &item.tree);
        }
        scope
    }

    #[test]
    fn aliases_in_the_body_resolve() {
        let scope = scope(&[
            "use std::time::SystemTime as Clock;",
            "use tokio::time::{sleep, interval as tick};",
            "use std::thread::{self as threads};",
            "use rand::*;",
            "use std::fs as disk;",
            "use crate::helpers::spawn;",
        ]);
        let hit = |text: &str| scope.resolve(&path(text)).map(|(hazard, _)| hazard);
        assert_eq!(hit("Clock::now"), Some(Clock));
        assert_eq!(
            scope.resolve(&path("Clock::now")).and_then(|(_, full)| full),
            Some(path("std::time::SystemTime::now"))
        );
        assert_eq!(hit("sleep"), Some(Sleep));
        assert_eq!(hit("tick"), Some(Interval));
        assert_eq!(hit("threads::spawn"), Some(ThreadSpawn));
        assert_eq!(hit("random"), Some(Random));
        assert_eq!(hit("disk::read"), Some(Io));
        // Imported from somewhere else: not ours to judge.
        assert_eq!(hit("spawn"), None);
        assert_eq!(hit("Clock::default"), None);
    }

    #[test]
    fn bare_names_without_a_use_in_the_body_pass() {
        let scope = Scope::default();
        for name in ["sleep", "spawn", "random", "interval", "rng"] {
            assert_eq!(scope.resolve(&path(name)), None, "{name}");
        }
    }

    fn errors_of(body: &str) -> Vec<String> {
        let mut function: ItemFn =
            syn::parse_str(&format!("async fn w(ctx: WorkflowContext) -> Result<(), WorkflowError> {{ {body} }}"))
                .unwrap_or_else(|e| panic!("{e}"));
        match check(Kind::Workflow, &mut function) {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn bodies() {
        assert!(errors_of("let t = ctx.now(); ctx.sleep(d).await?; println!(\"{t:?}\"); Ok(())").is_empty());
        assert_eq!(errors_of("let t = std::time::SystemTime::now(); Ok(())").len(), 1);
        assert_eq!(errors_of("println!(\"{:?}\", Instant::now()); Ok(())").len(), 1);
        assert_eq!(errors_of("let _ = futures::join!(a, tokio::spawn(b)); Ok(())").len(), 1);
        assert_eq!(errors_of("let f = || rand::random::<u8>(); Ok(())").len(), 1);
        assert_eq!(errors_of("let e = start.elapsed(); Ok(())").len(), 1);
        assert_eq!(errors_of("tokio::select! { _ = a => {} }; Ok(())").len(), 1);
        assert_eq!(errors_of("fn helper() -> u64 { rand::random() } Ok(())").len(), 1);
        assert_eq!(errors_of("#[activity] async fn inner() { rand::random() } Ok(())").len(), 0);
    }

    #[test]
    fn the_opt_out_skips_its_statement_and_is_removed() {
        let text = "async fn w(ctx: WorkflowContext) -> Result<(), WorkflowError> { \
            #[nondeterministic(reason = \"logged only\")] let t = std::time::Instant::now(); Ok(()) }";
        let mut function: ItemFn = syn::parse_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(check(Kind::Workflow, &mut function).is_ok());
        assert!(!function.to_token_stream().to_string().contains("nondeterministic"));
        assert_eq!(errors_of("#[nondeterministic] let t = std::time::Instant::now(); Ok(())").len(), 1);
        let nested = "async fn w(ctx: WorkflowContext) -> Result<(), WorkflowError> { \
            #[nondeterministic(reason = \"a\")] let t = { #[nondeterministic(reason = \"b\")] let u = 1; u }; Ok(()) }";
        let mut function: ItemFn = syn::parse_str(nested).unwrap_or_else(|e| panic!("{e}"));
        assert!(check(Kind::Workflow, &mut function).is_ok());
        assert!(!function.to_token_stream().to_string().contains("nondeterministic"));
        assert_eq!(errors_of("#[nondeterministic(reason = \"\")] let t = 1; Ok(())").len(), 1);
    }
}
