//! Parse and check: the function's signature as a small model, one check per rule, every error
//! reported at once, each spanned on the offending token.

use quote::ToTokens;
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, GenericParam, ItemFn, PatType, PathArguments, ReturnType, Type};

use crate::errors::Errors;
use crate::expand::Kind;

/// What the expansion needs from a valid signature.
pub(crate) struct Signature {
    pub(crate) input: Option<Type>,
    pub(crate) output: Type,
    /// The `E` of `Result<T, E>`, where rustc reports a missing `Into<WorkflowError>`.
    pub(crate) error: Type,
}

pub(crate) fn check(kind: Kind, item: &ItemFn) -> syn::Result<Signature> {
    let mut errors = Errors::default();
    check_async(kind, item, &mut errors);
    check_qualifiers(kind, item, &mut errors);
    check_generics(kind, item, &mut errors);
    let input = check_params(kind, item, &mut errors);
    let (output, error) =
        check_return(kind, item, &mut errors).unwrap_or_else(|| (syn::parse_quote!(()), syn::parse_quote!(())));
    errors.finish(Signature { input, output, error })
}

fn check_async(kind: Kind, item: &ItemFn, errors: &mut Errors) {
    if item.sig.asyncness.is_none() {
        errors.spanned(
            item.sig.fn_token,
            format!("{} functions must be `async`: write `async fn {}(...)`", kind.attr(), item.sig.ident),
        );
    }
}

fn check_qualifiers(kind: Kind, item: &ItemFn, errors: &mut Errors) {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, format!("{} functions cannot be `const`: remove `const`", kind.attr()));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            format!("{} functions cannot be `unsafe`: use an `unsafe` block inside the body", kind.attr()),
        );
    }
    if let Some(abi) = &sig.abi {
        errors
            .spanned(abi, format!("{} functions cannot have an ABI: remove `{}`", kind.attr(), abi.to_token_stream()));
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("{} functions cannot be variadic", kind.attr()));
    }
}

fn check_generics(kind: Kind, item: &ItemFn, errors: &mut Errors) {
    let generics = &item.sig.generics;
    if let Some(lifetime) = generics.params.iter().find(|p| matches!(p, GenericParam::Lifetime(_))) {
        errors.spanned(
            lifetime,
            format!(
                "{} functions cannot take lifetime parameters: inputs and outputs are stored as JSON, so use owned \
                 types like `String` and `Vec<T>`",
                kind.attr()
            ),
        );
    }
    if let Some(param) = generics.params.iter().find(|p| !matches!(p, GenericParam::Lifetime(_))) {
        errors.spanned(
            param,
            format!(
                "{} functions cannot be generic: the registered definition needs concrete input and output types",
                kind.attr()
            ),
        );
    }
    if let Some(clause) = &generics.where_clause {
        errors.spanned(clause, format!("{} functions cannot have a `where` clause: remove it", kind.attr()));
    }
}

/// Checks `(ctx: Context, input: I)` and returns the input type.
fn check_params(kind: Kind, item: &ItemFn, errors: &mut Errors) -> Option<Type> {
    let sig = &item.sig;
    let context = kind.context();
    let mut typed: Vec<&PatType> = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                format!(
                    "{} functions cannot take `self`: make it a free function, outside the `impl` block, with \
                     `ctx: {context}` first",
                    kind.attr()
                ),
            ),
            FnArg::Typed(param) => typed.push(param),
        }
    }
    if typed.is_empty() {
        if sig.inputs.is_empty() {
            errors.spanned(
                &sig.ident,
                format!(
                    "{} functions take the context first: add `ctx: {context}` as the first parameter",
                    kind.attr()
                ),
            );
        }
        return None;
    }
    // The context is the first parameter of a context type; with none, the first parameter is
    // taken for a missing context.
    let position = typed.iter().position(|param| context_name(&param.ty).is_some());
    match position {
        None => errors.spanned(
            &typed[0].ty,
            format!("{} functions take the context first: the first parameter must be `ctx: {context}`", kind.attr()),
        ),
        Some(0) => check_context_type(kind, &typed[0].ty, errors),
        Some(index) => {
            let param = typed[index];
            errors.spanned(
                param,
                format!(
                    "the context must be the first parameter of {} functions: move `{}` before the input",
                    kind.attr(),
                    pretty(param)
                ),
            );
            check_context_type(kind, &param.ty, errors);
        }
    }
    let context_index = position.unwrap_or(0);
    let mut inputs = typed.iter().enumerate().filter(|(i, _)| *i != context_index).map(|(_, param)| *param);
    let input = inputs.next().map(|param| {
        if let Some(name) = context_name(&param.ty) {
            errors.spanned(&param.ty, format!("{} functions take the context `{name}` only once", kind.attr()));
        }
        check_owned(kind, item, "inputs", &param.ty, errors);
        (*param.ty).clone()
    });
    if let Some(extra) = inputs.next() {
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
    let ty = match ty {
        Type::Reference(reference) => &*reference.elem,
        other => other,
    };
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?.ident.to_string();
    (last == "WorkflowContext" || last == "ActivityContext").then_some(last)
}

fn check_context_type(kind: Kind, ty: &Type, errors: &mut Errors) {
    let expected = kind.context();
    match (context_name(ty), ty) {
        (Some(name), _) if name != expected => errors.spanned(
            ty,
            format!(
                "context type `{name}` does not match {}: the first parameter must be `ctx: {expected}`",
                kind.attr()
            ),
        ),
        (Some(_), Type::Reference(_)) => {
            errors.spanned(ty, format!("take the context by value: `ctx: {expected}`, not a reference"))
        }
        (Some(_), _) => {}
        (None, _) => errors.spanned(
            ty,
            format!("{} functions take the context first: the first parameter must be `ctx: {expected}`", kind.attr()),
        ),
    }
}

/// Inputs and outputs cross a durable boundary: owned, concrete, `'static`.
fn check_owned(kind: Kind, item: &ItemFn, what: &str, ty: &Type, errors: &mut Errors) {
    // Lifetimes the function declares are reported once, by `check_generics`.
    let declares_lifetimes = item.sig.generics.lifetimes().next().is_some();
    match ty {
        Type::Reference(reference) => errors.spanned(
            reference,
            format!(
                "{} {what} must be owned (they are stored as JSON): take `{}` instead of `{}`",
                kind.attr(),
                owned_form(&reference.elem),
                pretty(ty)
            ),
        ),
        Type::ImplTrait(_) => errors
            .spanned(ty, format!("{} {what} must be concrete types, not `impl Trait`: name the type", kind.attr())),
        _ if declares_lifetimes => {}
        _ => {
            let mut borrowed = Borrowed(None);
            borrowed.visit_type(ty);
            if let Some(lifetime) = borrowed.0 {
                errors.spanned(
                    &lifetime,
                    format!(
                        "{} {what} must be `'static` (they are stored as JSON and outlive the call): use a type that \
                         owns its data instead of borrowing for `{lifetime}`",
                        kind.attr()
                    ),
                );
            }
        }
    }
}

/// Tokens as a person writes them: `&str`, `std::io::Result<u32>`, `ctx: WorkflowContext`.
pub(crate) fn pretty(tokens: impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        ("& ", "&"),
        (" ,", ","),
        (" : ", ": "),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// The owned type to suggest for a borrowed one: `String` for `str`, `Vec<T>` for `[T]`.
fn owned_form(elem: &Type) -> String {
    match elem {
        Type::Path(path) if path.path.is_ident("str") => "String".to_owned(),
        Type::Slice(slice) => format!("Vec<{}>", pretty(&slice.elem)),
        other => pretty(other),
    }
}

/// Finds the first lifetime other than `'static` in a type.
struct Borrowed(Option<syn::Lifetime>);

impl<'ast> Visit<'ast> for Borrowed {
    fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
        if self.0.is_none() && lifetime.ident != "static" {
            self.0 = Some(lifetime.clone());
        }
    }

    fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
        match &reference.lifetime {
            Some(lifetime) => self.visit_lifetime(lifetime),
            None if self.0.is_none() => self.0 = Some(syn::Lifetime::new("'_", reference.and_token.span)),
            None => {}
        }
        self.visit_type(&reference.elem);
    }
}

/// Checks `-> Result<T, E>` and returns `T` and `E`.
fn check_return(kind: Kind, item: &ItemFn, errors: &mut Errors) -> Option<(Type, Type)> {
    let usage = format!("{} functions must return `Result<T, E>`", kind.attr());
    let ty = match &item.sig.output {
        ReturnType::Default => {
            errors.at(item.sig.paren_token.span.close(), format!("{usage}: add `-> Result<T, {}>`", kind.error_type()));
            return None;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let (ok, err) = match result_args(ty) {
        ResultArgs::Both(ok, err) => (ok.clone(), err.clone()),
        ResultArgs::OkOnly(ok) => {
            errors.spanned(
                ty,
                format!(
                    "{usage} with both types written out, found `{}`: the macro cannot see through type aliases, so \
                     write `Result<{}, E>` with the alias's error type for `E`",
                    pretty(ty),
                    pretty(ok)
                ),
            );
            return None;
        }
        ResultArgs::NotResult => {
            errors.spanned(
                ty,
                format!("{usage}, found `{}`: write `Result<{}, {}>`", pretty(ty), pretty(ty), kind.error_type()),
            );
            return None;
        }
    };
    check_owned(kind, item, "outputs", &ok, errors);
    Some((ok, err))
}

enum ResultArgs<'a> {
    Both(&'a Type, &'a Type),
    OkOnly(&'a Type),
    NotResult,
}

/// `Result<T, E>` (any path ending in `Result` with two type arguments) to `T` and `E`.
fn result_args(ty: &Type) -> ResultArgs<'_> {
    let Type::Path(path) = ty else { return ResultArgs::NotResult };
    let Some(last) = path.path.segments.last() else { return ResultArgs::NotResult };
    if last.ident != "Result" {
        return ResultArgs::NotResult;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return ResultArgs::NotResult };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok, err] => ResultArgs::Both(ok, err),
        [ok] => ResultArgs::OkOnly(ok),
        _ => ResultArgs::NotResult,
    }
}

#[cfg(test)]
mod tests {
    use super::pretty;

    #[test]
    fn tokens_print_as_written() {
        let ty: syn::Type = syn::parse_quote!(&'a std::io::Result<Vec<(u32, [u8; 4])>>);
        assert_eq!(pretty(&ty), "&'a std::io::Result<Vec<(u32, [u8; 4])>>");
        let param: syn::FnArg = syn::parse_quote!(ctx: WorkflowContext);
        assert_eq!(pretty(&param), "ctx: WorkflowContext");
        let ty: syn::Type = syn::parse_quote!(&str);
        assert_eq!(pretty(&ty), "&str");
    }
}
