//! The trace an instance belongs to, as a W3C `traceparent`
//! (`00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`), so its runs before and after a
//! crash, its children and the caller that started it share one OpenTelemetry trace id.
//!
//! An instance stores the `traceparent` its starter gave (a client's [`Start::trace_parent`],
//! HTTP's `traceparent` header) or its parent's trace with a span of its own (a child). One
//! stored without (created by a debounce, a schedule, a store from before traces were kept) has
//! one derived from its id and creation time: the same on every run, so it too continues across
//! restarts.
//!
//! [`Start::trace_parent`]: crate::Start::trace_parent

use uuid::Uuid;

use super::Millis;

/// The namespace of the derived trace ids (a fixed random UUID: derived ids are unlikely to meet
/// anyone else's).
const DERIVED: Uuid = Uuid::from_u128(0x6b1f_3c2e_9a47_4d0e_8f53_2d1c_7e90_ab34);

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// Parses a W3C `traceparent` (version 00; lower-case hex; neither id all zeros). The error
    /// says what is wrong.
    pub(crate) fn parse(traceparent: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid traceparent {traceparent:?}: {why}");
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let [version, trace_id, span_id, flags] = parts[..] else {
            return Err(bad("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        };
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version != "00" {
            return Err(bad("only version 00 is understood"));
        }
        if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
            return Err(bad("expected 00-<32 lower-case hex>-<16 lower-case hex>-<2 lower-case hex>"));
        }
        let context = Self {
            trace_id: u128::from_str_radix(trace_id, 16).map_err(|e| bad(&e.to_string()))?,
            span_id: u64::from_str_radix(span_id, 16).map_err(|e| bad(&e.to_string()))?,
            flags: u8::from_str_radix(flags, 16).map_err(|e| bad(&e.to_string()))?,
        };
        if context.trace_id == 0 || context.span_id == 0 {
            return Err(bad("an all-zero id is invalid"));
        }
        Ok(context)
    }

    /// The context of instance `id` created at `created_at`: `stored` when it parses, else the
    /// one derived from the id and time.
    pub(crate) fn of_instance(stored: Option<&str>, id: &str, created_at: Millis) -> Self {
        match stored.map(Self::parse) {
            Some(Ok(context)) => context,
            _ => {
                let derived = Uuid::new_v5(&DERIVED, format!("{id}@{created_at}").as_bytes()).as_u128();
                Self::nonzero(derived, derived as u64, 1)
            }
        }
    }

    /// The context a child instance `child_id` stores: this trace, a span of the child's own.
    pub(crate) fn child(&self, child_id: &str) -> Self {
        let span = Uuid::new_v5(&DERIVED, format!("{:032x}/{child_id}", self.trace_id).as_bytes()).as_u128();
        Self::nonzero(self.trace_id, span as u64, self.flags)
    }

    fn nonzero(trace_id: u128, span_id: u64, flags: u8) -> Self {
        Self { trace_id: trace_id.max(1), span_id: span_id.max(1), flags }
    }

    /// The trace id, 32 lower-case hex digits.
    pub(crate) fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The parent span id, 16 lower-case hex digits.
    pub(crate) fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// As a `traceparent`.
    pub(crate) fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id(), self.span_id(), self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(text).unwrap();
        assert_eq!(context.traceparent(), text);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_contexts_are_stable_and_children_share_the_trace() {
        let a = TraceContext::of_instance(None, "order-7", 1_000);
        assert_eq!(a, TraceContext::of_instance(None, "order-7", 1_000), "the same on every run");
        assert_ne!(a.trace_id(), TraceContext::of_instance(None, "order-7", 1_001).trace_id());
        assert_eq!(TraceContext::of_instance(Some("garbage"), "order-7", 1_000), a, "an unreadable one is derived");
        let child = a.child("order-7-g0-c1");
        assert_eq!(child.trace_id(), a.trace_id());
        assert_ne!(child.span_id(), a.span_id());
        assert_eq!(child, a.child("order-7-g0-c1"));
    }
}
