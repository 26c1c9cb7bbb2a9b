//! Expand: the user's function unchanged, plus a module of the same name with the definition
//! struct and typed helpers. Generated code reaches the runtime only through `<crate>::__private`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, Visibility};

use crate::attr::{Args, RetryArgs};
use crate::determinism;
use crate::errors::Errors;
use crate::signature::{self, Signature};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Workflow,
    Activity,
}

impl Kind {
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Workflow => "`#[workflow]`",
            Kind::Activity => "`#[activity]`",
        }
    }

    pub(crate) fn context(self) -> &'static str {
        match self {
            Kind::Workflow => "WorkflowContext",
            Kind::Activity => "ActivityContext",
        }
    }

    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Kind::Workflow => "WorkflowError",
            Kind::Activity => "ActivityError",
        }
    }
}

pub(crate) fn entry(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let message = format!("{} applies to an `async fn`", kind.attr());
            let error = syn::Error::new(Span::call_site(), message).into_compile_error();
            return quote! { #error #item };
        }
    };
    // Also removes the `#[nondeterministic]` opt-outs, so the function emitted below, with or
    // without errors, never carries them.
    let body_checked = determinism::check(kind, &mut function);
    let expanded = match expand(kind, args, &function, body_checked) {
        Ok(tokens) => tokens,
        // Keep the user's function next to the error so the IDE still knows it.
        Err(error) => {
            let error = error.into_compile_error();
            quote! { #error #function }
        }
    };
    if std::env::var_os("WORKFLOW_MACROS_DEBUG").is_some() {
        eprintln!("{expanded}");
    }
    expanded
}

fn expand(kind: Kind, args: TokenStream, function: &ItemFn, body_checked: syn::Result<()>) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = errors.extend(Args::parse(args, kind));
    let sig = errors.extend(signature::check(kind, function));
    let (Some(args), Some(sig)) = (args, sig) else {
        errors.extend(body_checked);
        return errors.finish(TokenStream::new());
    };
    // A body that fails only the determinism check still gets its module, so the code that
    // registers or starts the workflow does not add errors of its own.
    let body_errors = body_checked.err().map(syn::Error::into_compile_error);
    let krate: syn::Path = args.krate.get().cloned().unwrap_or_else(|| syn::parse_quote!(::workflow));
    let ident = &function.sig.ident;
    let name = args.name.get().map(|lit| lit.value()).unwrap_or_else(|| ident.to_string());
    let vis = inner_visibility(&function.vis);
    let outer_vis = &function.vis;
    let body = match kind {
        Kind::Activity => expand_activity(&krate, ident, &name, &vis, &sig, &args),
        Kind::Workflow => expand_workflow(&krate, ident, &name, &vis, &sig, &args),
    };
    let asserts = payload_asserts(&krate, &sig);
    let doc = format!("Durable helpers of the {} [`{ident}`](fn@{ident}).", kind.attr().trim_matches('`'));
    Ok(quote! {
        #body_errors
        #function

        #[doc = #doc]
        #[allow(clippy::module_name_repetitions, non_snake_case, unused_imports, dead_code)]
        #outer_vis mod #ident {
            use super::*;
            #asserts
            #body
        }
    })
}

/// Items in the generated module are visible as far as the function is.
fn inner_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Public(_) => quote!(pub),
        Visibility::Restricted(restricted) if restricted.path.is_ident("crate") => quote!(pub(crate)),
        Visibility::Restricted(_) => quote!(pub(crate)),
    }
}

fn input_type(sig: &Signature) -> TokenStream {
    match &sig.input {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// Compile-time checks spanned on the user's types, so rustc points at them. Each is the
/// associated type of a local impl of `__private::AssertPayload`, checked exactly like the `Input`
/// and `Output` of the generated `ActivityDef` or `WorkflowDef` impl: a type that is not a
/// `Payload` gets one error (rustc prints identical errors once), which does not depend on which
/// types implement `Serialize` in the build (see `__private::PayloadCheck`).
fn payload_asserts(krate: &syn::Path, sig: &Signature) -> TokenStream {
    let mut checks = TokenStream::new();
    for ty in sig.input.iter().chain(std::iter::once(&sig.output)) {
        checks.extend(quote_spanned! {ty.span()=>
            const _: () = {
                struct __PayloadAssert;
                impl #krate::__private::AssertPayload for __PayloadAssert {
                    type Type = #ty;
                }
            };
        });
    }
    checks
}

/// A generated helper's name, spanned on the user's function, so a type error at a call site
/// points at the annotated function as the one "defined here".
fn helper(name: &str, function: &syn::Ident) -> syn::Ident {
    syn::Ident::new(name, function.span())
}

/// The conversion of the function's error into the runtime's, spanned on the error type: one
/// that does not convert is reported there, not on the attribute.
fn into_error(sig: &Signature, target: &TokenStream) -> TokenStream {
    let error = &sig.error;
    if matches!(error, syn::Type::ImplTrait(_) | syn::Type::Infer(_)) {
        // Not writable as a closure parameter's type.
        return quote!(::core::convert::Into::into);
    }
    let convert = quote_spanned! {error.span()=>
        <#error as ::core::convert::Into<#target>>::into(error)
    };
    quote! { |error: #error| -> #target { #convert } }
}

fn expand_activity(
    krate: &syn::Path,
    ident: &syn::Ident,
    name: &str,
    vis: &TokenStream,
    sig: &Signature,
    args: &Args,
) -> TokenStream {
    let p = quote!(#krate::__private);
    let retry = &args.retry;
    let ms = |value: Option<&u64>| match value {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let start_to_close = ms(args.start_to_close_ms.get());
    let heartbeat_timeout = ms(args.heartbeat_timeout_ms.get());
    let input = input_type(sig);
    let output = &sig.output;
    let (call_params, call_input, invoke) = match &sig.input {
        Some(ty) => (quote!(input: #ty), quote!(input), quote!(super::#ident(ctx, input))),
        None => (quote!(), quote!(()), quote!({ let () = input; super::#ident(ctx) })),
    };
    let (call_fn, fan_out_fn) = (helper("call", ident), helper("fan_out", ident));
    let policy = retry_policy(&p, retry);
    let concurrency = args
        .concurrency
        .get()
        .map(|limit| quote!(const CONCURRENCY: ::core::option::Option<u32> = ::core::option::Option::Some(#limit);));
    let rate = rate_const(&p, args);
    let concurrency_key = concurrency_key_fn(args, &input);
    let into_error = into_error(sig, &quote!(#p::ActivityError));
    let fan_out = sig.input.as_ref().map(|ty| {
        quote! {
            /// Calls the activity once per input, in parallel (bound it with `.max_parallel(n)`);
            /// results come back in input order.
            #vis fn #fan_out_fn(
                ctx: &#p::WorkflowContext,
                inputs: impl ::core::iter::IntoIterator<Item = #ty>,
            ) -> #p::FanOut<#p::ActivityCall<Activity>> {
                ctx.fan_out::<Activity>(inputs)
            }
        }
    });
    quote! {
        /// The activity's definition: register it with `Runtime::builder().activity(...)`.
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct Activity;

        #[automatically_derived]
        impl #p::ActivityDef for Activity {
            type Input = #input;
            type Output = #output;
            const NAME: &'static str = #name;
            #concurrency
            #rate

            #concurrency_key

            fn retry_policy() -> #p::RetryPolicy {
                #policy
            }

            fn options() -> #p::ActivityOptions {
                #p::ActivityOptions { start_to_close: #start_to_close, heartbeat_timeout: #heartbeat_timeout }
            }

            fn run(
                ctx: #p::ActivityContext,
                input: #input,
            ) -> #p::BoxFuture<'static, ::core::result::Result<#output, #p::ActivityError>> {
                #p::boxed(async move { #invoke.await.map_err(#into_error) })
            }
        }

        /// Calls the activity durably from a workflow (await it; `.retry(policy)` overrides the
        /// policy for this call).
        #vis fn #call_fn(ctx: &#p::WorkflowContext, #call_params) -> #p::ActivityCall<Activity> {
            ctx.call_activity::<Activity>(#call_input)
        }

        #fan_out
    }
}

fn retry_policy(p: &TokenStream, retry: &RetryArgs) -> TokenStream {
    let mut fields = TokenStream::new();
    if let Some(n) = retry.max_attempts.get() {
        fields.extend(quote!(policy.max_attempts = #n;));
    }
    if let Some(ms) = retry.first_interval_ms.get() {
        fields.extend(quote!(policy.first_interval = ::core::time::Duration::from_millis(#ms);));
    }
    if let Some(backoff) = retry.backoff.get() {
        fields.extend(quote!(policy.backoff = #backoff;));
    }
    if let Some(ms) = retry.max_interval_ms.get() {
        fields.extend(
            quote!(policy.max_interval = ::core::option::Option::Some(::core::time::Duration::from_millis(#ms));),
        );
    }
    if let Some(ms) = retry.timeout_ms.get() {
        fields.extend(quote!(policy.timeout = ::core::option::Option::Some(::core::time::Duration::from_millis(#ms));));
    }
    if fields.is_empty() {
        return quote!(<#p::RetryPolicy as ::core::default::Default>::default());
    }
    quote! {{
        let mut policy = <#p::RetryPolicy as ::core::default::Default>::default();
        #fields
        policy
    }}
}

/// `fn concurrency_key` of a `key = ...` setting, on either kind. Coerced to a function pointer
/// of the input type, so a key of the wrong input type (or a closure that captures) is a compile
/// error at the attribute.
fn concurrency_key_fn(args: &Args, input: &TokenStream) -> Option<TokenStream> {
    args.concurrency_key.get().map(|key| {
        quote! {
            fn concurrency_key(input: &#input) -> ::std::string::String {
                let key: fn(&#input) -> ::std::string::String = #key;
                key(input)
            }
        }
    })
}

/// `const RATE` of a `rate = "N/period"` setting, on either kind.
fn rate_const(p: &TokenStream, args: &Args) -> Option<TokenStream> {
    args.rate.get().map(|(limit, period_ms)| {
        quote!(const RATE: ::core::option::Option<#p::RateLimit> =
            ::core::option::Option::Some(#p::RateLimit { limit: #limit, period_ms: #period_ms });)
    })
}

fn expand_workflow(
    krate: &syn::Path,
    ident: &syn::Ident,
    name: &str,
    vis: &TokenStream,
    sig: &Signature,
    args: &Args,
) -> TokenStream {
    let p = quote!(#krate::__private);
    let input = input_type(sig);
    let priority = args.priority.get().map(|priority| quote!(const PRIORITY: i32 = #priority;));
    let concurrency = args
        .concurrency
        .get()
        .map(|limit| quote!(const CONCURRENCY: ::core::option::Option<u32> = ::core::option::Option::Some(#limit);));
    let rate = rate_const(&p, args);
    let concurrency_key = concurrency_key_fn(args, &input);
    let keyed = args.concurrency_key.get().map(|_| {
        quote!(
            const KEYED: bool = true;
        )
    });
    let output = &sig.output;
    let into_error = into_error(sig, &quote!(#p::WorkflowError));
    let (call_fn, fan_out_fn, start_fn) = (helper("call", ident), helper("fan_out", ident), helper("start", ident));
    let continue_as_new_fn = helper("continue_as_new", ident);
    let (start_params, start_input, call_input, invoke) = match &sig.input {
        Some(ty) => (quote!(input: #ty), quote!(&input), quote!(input), quote!(super::#ident(ctx, input))),
        None => (quote!(), quote!(&()), quote!(()), quote!({ let () = input; super::#ident(ctx) })),
    };
    let fan_out = sig.input.as_ref().map(|ty| {
        quote! {
            /// Calls the workflow as a child once per input, in parallel (bound it with
            /// `.max_parallel(n)`); results come back in input order.
            #vis fn #fan_out_fn(
                ctx: &#p::WorkflowContext,
                inputs: impl ::core::iter::IntoIterator<Item = #ty>,
            ) -> #p::FanOut<#p::ChildCall<Workflow>> {
                ctx.fan_out_children::<Workflow>(inputs)
            }
        }
    });
    quote! {
        /// The workflow's definition: register it with `Runtime::builder().workflow(...)`.
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct Workflow;

        #[automatically_derived]
        impl #p::WorkflowDef for Workflow {
            type Input = #input;
            type Output = #output;
            const NAME: &'static str = #name;
            #priority
            #concurrency
            #rate
            #keyed

            #concurrency_key

            fn run(
                ctx: #p::WorkflowContext,
                input: #input,
            ) -> #p::BoxFuture<'static, ::core::result::Result<#output, #p::WorkflowError>> {
                #p::boxed(async move { #invoke.await.map_err(#into_error) })
            }
        }

        /// Starts an instance: set `.id(..)`, `.reuse(..)` and `.priority(..)` if needed, then
        /// `.await` it for a handle whose `result()` waits for the output.
        #vis fn #start_fn(client: &#p::Client, #start_params) -> #p::Start<#output> {
            client.start::<Workflow>(#start_input)
        }

        /// Calls the workflow as a child of the running workflow; the parent/child link is stored.
        #vis fn #call_fn(ctx: &#p::WorkflowContext, #start_params) -> #p::ChildCall<Workflow> {
            ctx.call_child::<Workflow>(#call_input)
        }

        #fan_out

        /// Restarts the running instance of this workflow with new input and an empty journal.
        #vis async fn #continue_as_new_fn(
            ctx: &#p::WorkflowContext,
            #start_params
        ) -> ::core::result::Result<#output, #p::WorkflowError> {
            ctx.continue_as_new::<#input, #output>(#start_input).await
        }
    }
}
