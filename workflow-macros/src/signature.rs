//! Parse and check: the function's signature as a small model, one check per rule, every error
//! reported at once, each spanned on the offending token.

use quote::ToTokens;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use crate::expand::Kind;

/// What the expansion needs from a valid signature.
pub(crate) struct Signature {
    pub(crate) input: Option<Type>,
    pub(crate) output: Type,
}

/// Collects every error instead of stopping at the first.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }
}

pub(crate) fn check(kind: Kind, item: &ItemFn) -> syn::Result<Signature> {
    let mut errors = Errors::default();
    let sig = &item.sig;
    check_async(kind, item, &mut errors);
    check_generics(kind, item, &mut errors);
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, format!("{} functions cannot be `const`", kind.attr()));
    }
    let input = check_params(kind, item, &mut errors);
    let output = check_return(kind, item, &mut errors);
    match errors.0 {
        Some(error) => Err(error),
        None => Ok(Signature { input, output: output.unwrap_or_else(|| syn::parse_quote!(())) }),
    }
}

fn check_async(kind: Kind, item: &ItemFn, errors: &mut Errors) {
    if item.sig.asyncness.is_none() {
        errors.spanned(
            item.sig.fn_token,
            format!("{} functions must be `async`: write `async fn {}(...)`", kind.attr(), item.sig.ident),
        );
    }
}

fn check_generics(kind: Kind, item: &ItemFn, errors: &mut Errors) {
    let generics = &item.sig.generics;
    if !generics.params.is_empty() {
        errors.spanned(
            &generics.params,
            format!("{} functions cannot be generic or take lifetimes: use concrete, owned types", kind.attr()),
        );
    }
    if let Some(clause) = &generics.where_clause {
        errors.spanned(clause, format!("{} functions cannot have a `where` clause", kind.attr()));
    }
}

/// Checks `(ctx: Context, input: I)` and returns the input type.
fn check_params(kind: Kind, item: &ItemFn, errors: &mut Errors) -> Option<Type> {
    let sig = &item.sig;
    let mut params = sig.inputs.iter();
    let context = kind.context();
    match params.next() {
        None => {
            errors.spanned(
                &sig.ident,
                format!(
                    "{} functions take the context first: add `ctx: {context}` as the first parameter",
                    kind.attr()
                ),
            );
            return None;
        }
        Some(FnArg::Receiver(receiver)) => {
            errors.spanned(
                receiver,
                format!(
                    "{} functions cannot take `self`: make it a free function with `ctx: {context}` first",
                    kind.attr()
                ),
            );
        }
        Some(FnArg::Typed(first)) => check_context_type(kind, &first.ty, errors),
    }
    let input = match params.next() {
        None => None,
        Some(FnArg::Receiver(receiver)) => {
            errors.spanned(receiver, format!("{} functions cannot take `self`", kind.attr()));
            None
        }
        Some(FnArg::Typed(input)) => {
            if let Some(name) = context_name(&input.ty) {
                errors
                    .spanned(&input.ty, format!("the context `{name}` must be the first parameter, before the input"));
            }
            check_owned(kind, &input.ty, errors);
            Some((*input.ty).clone())
        }
    };
    if let Some(extra) = params.next() {
        errors.spanned(
            extra,
            format!(
                "{} functions take at most one input after the context: put several values in a struct or a tuple",
                kind.attr()
            ),
        );
    }
    input
}

/// The last path segment when it names one of the two context types.
fn context_name(ty: &Type) -> Option<String> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?.ident.to_string();
    (last == "WorkflowContext" || last == "ActivityContext").then_some(last)
}

fn check_context_type(kind: Kind, ty: &Type, errors: &mut Errors) {
    let expected = kind.context();
    match context_name(ty) {
        Some(name) if name == expected => {}
        Some(name) => errors.spanned(
            ty,
            format!(
                "context type `{name}` does not match {}: the first parameter must be `ctx: {expected}`",
                kind.attr()
            ),
        ),
        None => {
            let message = if let Type::Reference(_) = ty {
                format!("take the context by value: `ctx: {expected}`, not a reference")
            } else {
                format!(
                    "{} functions take the context first: the first parameter must be `ctx: {expected}`",
                    kind.attr()
                )
            };
            errors.spanned(ty, message);
        }
    }
}

/// Inputs and outputs cross a durable boundary: no references, no `impl Trait`.
fn check_owned(kind: Kind, ty: &Type, errors: &mut Errors) {
    match ty {
        Type::Reference(reference) => errors.spanned(
            reference,
            format!(
                "{} inputs must be owned (they are stored as JSON): take `{}` by value",
                kind.attr(),
                reference.elem.to_token_stream()
            ),
        ),
        Type::ImplTrait(_) => {
            errors.spanned(ty, format!("{} inputs must be concrete types, not `impl Trait`", kind.attr()))
        }
        _ => {}
    }
}

/// Checks `-> Result<T, E>` and returns `T`.
fn check_return(kind: Kind, item: &ItemFn, errors: &mut Errors) -> Option<Type> {
    let usage = format!("{} functions must return `Result<T, E>`", kind.attr());
    let ty = match &item.sig.output {
        ReturnType::Default => {
            errors.push(syn::Error::new(
                item.sig.paren_token.span.close(),
                format!("{usage}: add `-> Result<T, {}>`", kind.error_type()),
            ));
            return None;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let Some((ok, _err)) = result_args(ty) else {
        errors.spanned(
            ty,
            format!(
                "{usage}, found `{}`: write `Result<{}, {}>`",
                ty.to_token_stream(),
                ty.to_token_stream(),
                kind.error_type()
            ),
        );
        return None;
    };
    if let Type::Reference(reference) = &ok {
        errors.spanned(reference, format!("{} outputs must be owned (they are stored as JSON)", kind.attr()));
    }
    if let Type::ImplTrait(_) = &ok {
        errors.spanned(&ok, format!("{} outputs must be concrete types, not `impl Trait`", kind.attr()));
    }
    Some(ok)
}

/// `Result<T, E>` (any path ending in `Result` with two type arguments) to `(T, E)`.
fn result_args(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    let ok = types.next()?;
    let err = types.next()?;
    types.next().is_none().then_some((ok, err))
}
