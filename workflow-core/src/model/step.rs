//! [`StepKind`]: what kind of durable operation a journal record holds.

use std::fmt;

/// The kind of durable operation a journal record holds. Stored as its lower-case name
/// ([`StepKind::as_str`]), so a database reads the same whatever the enum's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// An activity call.
    Activity,
    /// A durable timer.
    Timer,
    /// A wait for an external event.
    Event,
    /// A child workflow call.
    Child,
    /// The winner of a race.
    Race,
    /// A recorded `ctx.now()`.
    Now,
    /// A recorded `ctx.random()`.
    Random,
    /// A recorded `ctx.uuid()`.
    Uuid,
    /// A recorded `ctx.patched(..)` decision.
    Patch,
}

impl StepKind {
    /// Every kind, in declaration order.
    pub const ALL: [StepKind; 9] = [
        Self::Activity,
        Self::Timer,
        Self::Event,
        Self::Child,
        Self::Race,
        Self::Now,
        Self::Random,
        Self::Uuid,
        Self::Patch,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activity => "activity",
            Self::Timer => "timer",
            Self::Event => "event",
            Self::Child => "child",
            Self::Race => "race",
            Self::Now => "now",
            Self::Random => "random",
            Self::Uuid => "uuid",
            Self::Patch => "patch",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether the step records a value the workflow asked for (`now`, `random`, `uuid`, a
    /// patch decision) rather than an operation with an effect or a wait.
    pub fn is_recorded_value(self) -> bool {
        matches!(self, Self::Now | Self::Random | Self::Uuid | Self::Patch)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::StepKind;

    #[test]
    fn stored_names_round_trip_and_stay_as_before() {
        let names: Vec<&str> = StepKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(names, ["activity", "timer", "event", "child", "race", "now", "random", "uuid", "patch"]);
        for kind in StepKind::ALL {
            assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(StepKind::parse("Activity"), None);
    }
}
