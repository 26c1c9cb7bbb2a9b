//! An instance's history drawn as a Mermaid flowchart (text), for `client.diagram(id)` and
//! status pages.
//!
//! The renderer is pure: it takes the instance and its journal as plain views
//! ([`DiagramInstance`], [`DiagramStep`]) and returns the same text for the same input.
//!
//! What it draws:
//! - a start node (workflow name and instance id), then the steps in `seq` order, chained;
//! - activities as boxes (with their attempt count when retried, and the next attempt's due time
//!   while retrying), timers as parallelograms, event waits as flags, child workflows as
//!   subroutines, race winners as diamonds;
//! - consecutive steps of one fan-out side by side between a fork and a join node; a fan-out of
//!   more than 12 branches shows only its first few, its earliest failed or
//!   unfinished ones and its last, with one "… N more" node standing for the rest, and the join
//!   counts every branch by status;
//! - a run of more than 5 consecutive steps of one kind and name (a loop calling one activity, a
//!   polling timer) as one node, "`name` × k" with its steps counted by status; a last step of the
//!   run that has not completed is drawn on its own after it, so what it waits for shows;
//! - at most 100 nodes of steps, runs and fan-outs: past that, the first 60 and the last 30,
//!   with one "… N more steps" node standing for those between;
//! - an end node with the instance's status (and error message), reached by a dotted arrow while
//!   the instance has not finished.
//!
//! So a diagram stays small whatever the journal holds: a history of 100,000 steps draws at most
//! a few hundred nodes.
//!
//! Recorded values (`now`, `random`, `uuid`, `patch`) are not drawn: they are replay bookkeeping,
//! not steps anyone waits on.

mod svg;
mod text;

use std::fmt::Write as _;

use crate::model::codec::StoredFailure;
use crate::store::{JournalRecord, Millis, RecordStatus, RuntimeStatus, StepKind, NEVER};

/// Fan-outs with more branches than this are collapsed.
const COLLAPSE_ABOVE: usize = 12;
/// How many leading branches a collapsed fan-out shows.
const COLLAPSED_HEAD: usize = 3;
/// How many failed or unfinished branches from the middle a collapsed fan-out shows as well.
const COLLAPSED_ATTENTION: usize = 2;
/// Runs of consecutive steps of one kind and name longer than this are collapsed.
const RUN_COLLAPSE_ABOVE: usize = 5;
/// The most items (steps, runs, fan-outs) drawn; past it only the head and the tail are.
const MAX_ITEMS: usize = 100;
/// How many items a capped diagram draws before its "… N more steps" node.
const CAPPED_HEAD: usize = 60;
/// How many items a capped diagram draws after it.
const CAPPED_TAIL: usize = 30;
/// The longest text (in characters) taken from a payload, message or name.
const MAX_TEXT: usize = 60;

/// One step of an instance's history, as the diagram draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagramStep<'a> {
    /// The step's position in the order the workflow issued its operations.
    pub seq: u32,
    /// The kind of step.
    pub kind: StepKind,
    /// The activity, child workflow or event name; `sleep` for timers; `race` for races.
    pub name: &'a str,
    /// Its state: Scheduled (waiting: a timer, an event wait, a running child), Retrying,
    /// Completed or Failed.
    pub status: RecordStatus,
    /// Attempts made so far (activities).
    pub attempt: u32,
    /// JSON: the output when Completed; for Failed or Retrying activities and timed-out events
    /// `{"message": "...", "attempts": n}`; for failed children `{"error_type": "...", "message": "..."}`.
    pub payload: Option<&'a str>,
    /// Milliseconds since the Unix epoch: a timer's or event wait's deadline, a retry's due time.
    pub due_at: Option<Millis>,
    /// The first seq of the fan-out this step belongs to, if it was issued as part of a fan-out
    /// (parallel calls).
    pub parallel_group: Option<u32>,
}

impl<'a> DiagramStep<'a> {
    /// The step a journal record describes; `parallel_group` as in [`DiagramStep::parallel_group`].
    pub fn from_record(record: &'a JournalRecord) -> Self {
        Self {
            seq: record.seq,
            kind: record.kind,
            name: &record.name,
            status: record.status,
            attempt: record.attempt,
            payload: record.payload.as_deref(),
            due_at: record.due_at,
            parallel_group: record.parallel_group,
        }
    }
}

/// The instance a diagram is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagramInstance<'a> {
    /// The instance id.
    pub id: &'a str,
    /// The workflow's registered name.
    pub workflow: &'a str,
    /// Its runtime status, shown on the end node.
    pub status: RuntimeStatus,
    /// Why it failed (or was terminated), as plain text, shown on the end node.
    pub error_message: Option<&'a str>,
}

/// Renders an instance's history as a Mermaid flowchart (`flowchart TD`).
///
/// Steps may come in any order; they are drawn by `seq` (a repeated seq is drawn once). The
/// output is deterministic. Node ids are `start`, `finish`, `s<seq>` for steps, `f<seq>` and
/// `j<seq>` for a fan-out's fork and join, and `m<seq>` for a collapsed fan-out's "more" node
/// (`<seq>` being the fan-out's first step), `r<seq>` for a collapsed run and `x<seq>` for the
/// "more steps" node of a capped diagram (`<seq>` being their first step).
pub fn render_mermaid(instance: &DiagramInstance<'_>, steps: &[DiagramStep<'_>]) -> String {
    draw(instance, steps).mermaid()
}

/// Renders an instance's history as a picture: the same nodes and arrows as [`render_mermaid`],
/// laid out top to bottom (a fan-out's branches side by side) in a standalone SVG document, with
/// every label escaped as XML text. Deterministic, like the Mermaid text.
pub fn render_svg(instance: &DiagramInstance<'_>, steps: &[DiagramStep<'_>]) -> String {
    svg::render(&draw(instance, steps))
}

/// Renders an instance's history as text for a terminal: the same nodes top to bottom, a mark for
/// each node's state (`✓` completed, `✗` failed, `…` running or waiting, `■` stopped, `◇` a
/// fork or join), a fan-out's branches as a list under its fork, and `┆` before an end the
/// instance has not reached yet.
pub fn render_text(instance: &DiagramInstance<'_>, steps: &[DiagramStep<'_>]) -> String {
    text::render(&draw(instance, steps))
}

/// The nodes and arrows of an instance's diagram, in drawing order.
fn draw(instance: &DiagramInstance<'_>, steps: &[DiagramStep<'_>]) -> Diagram {
    let mut visible: Vec<&DiagramStep<'_>> = steps.iter().filter(|step| !step.kind.is_recorded_value()).collect();
    visible.sort_by_key(|step| step.seq);
    visible.dedup_by_key(|step| step.seq);

    let mut out = Diagram::default();
    let start = vec![escape(instance.workflow), escape(instance.id)];
    out.node("start", Shape::Stadium, &start);
    let mut previous = "start".to_owned();

    for item in capped(items(&visible)) {
        previous = match item {
            Item::Step(step) => {
                let id = format!("s{}", step.seq);
                out.step(&id, step);
                out.edge(&previous, &id, false);
                id
            }
            Item::FanOut(batch) => out.fan_out(&previous, batch),
            Item::Run(run) => out.run(&previous, run),
            Item::Skipped(hidden) => out.skipped(&previous, &hidden),
        };
    }

    let mut end = vec![escape(end_status_text(instance.status))];
    if let Some(message) = instance.error_message.filter(|message| !message.trim().is_empty()) {
        end.push(escape(&truncate(message)));
    }
    out.node("finish", Shape::Stadium, &end);
    out.class("finish", end_class(instance.status));
    out.edge(&previous, "finish", !instance.status.is_terminal());
    out
}

/// What the diagram draws as one node (or, for a fan-out, one fork-to-join block).
enum Item<'s, 'a> {
    Step(&'s DiagramStep<'a>),
    FanOut(&'s [&'s DiagramStep<'a>]),
    /// More than [`RUN_COLLAPSE_ABOVE`] consecutive steps of one kind and name.
    Run(&'s [&'s DiagramStep<'a>]),
    /// The steps of the items a capped diagram leaves out.
    Skipped(Vec<&'s DiagramStep<'a>>),
}

impl<'s, 'a> Item<'s, 'a> {
    fn steps(&self) -> &[&'s DiagramStep<'a>] {
        match self {
            Item::Step(step) => std::slice::from_ref(step),
            Item::FanOut(steps) | Item::Run(steps) => steps,
            Item::Skipped(steps) => steps,
        }
    }
}

/// The steps (in seq order) grouped into what is drawn: fan-outs, collapsed runs, single steps.
fn items<'s, 'a>(visible: &'s [&'s DiagramStep<'a>]) -> Vec<Item<'s, 'a>> {
    let mut items = Vec::new();
    let mut rest = visible;
    while let Some(first) = rest.first() {
        let length = match first.parallel_group {
            Some(group) => rest.iter().take_while(|step| step.parallel_group == Some(group)).count(),
            None => rest
                .iter()
                .take_while(|step| step.parallel_group.is_none() && step.kind == first.kind && step.name == first.name)
                .count(),
        };
        let (batch, tail) = rest.split_at(length);
        rest = tail;
        match batch {
            [step] => items.push(Item::Step(step)),
            _ if first.parallel_group.is_some() => items.push(Item::FanOut(batch)),
            _ if batch.len() <= RUN_COLLAPSE_ABOVE => items.extend(batch.iter().map(|step| Item::Step(step))),
            [done @ .., last] if last.status != RecordStatus::Completed => {
                items.push(Item::Run(done));
                items.push(Item::Step(last));
            }
            _ => items.push(Item::Run(batch)),
        }
    }
    items
}

/// `items`, or, past [`MAX_ITEMS`], their head and tail with one [`Item::Skipped`] between.
fn capped<'s, 'a>(mut items: Vec<Item<'s, 'a>>) -> Vec<Item<'s, 'a>> {
    if items.len() <= MAX_ITEMS {
        return items;
    }
    let tail = items.split_off(items.len() - CAPPED_TAIL);
    let hidden: Vec<&DiagramStep<'_>> = items.drain(CAPPED_HEAD..).flat_map(|item| item.steps().to_vec()).collect();
    items.push(Item::Skipped(hidden));
    items.extend(tail);
    items
}

/// Node shapes, with their Mermaid brackets.
#[derive(Clone, Copy)]
enum Shape {
    Box,
    Stadium,
    Subroutine,
    Parallelogram,
    Flag,
    Diamond,
    Hexagon,
}

impl Shape {
    fn brackets(self) -> (&'static str, &'static str) {
        match self {
            Self::Box => ("[\"", "\"]"),
            Self::Stadium => ("([\"", "\"])"),
            Self::Subroutine => ("[[\"", "\"]]"),
            Self::Parallelogram => ("[/\"", "\"/]"),
            Self::Flag => (">\"", "\"]"),
            Self::Diamond => ("{\"", "\"}"),
            Self::Hexagon => ("{{\"", "\"}}"),
        }
    }
}

/// Styling classes, in the order their `class` lines are written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Completed,
    Failed,
    Running,
    Stopped,
}

impl Class {
    const ALL: [Class; 4] = [Self::Completed, Self::Failed, Self::Running, Self::Stopped];

    fn name(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }

    /// Fill, stroke and text colours.
    fn colors(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Completed => ("#d4edda", "#28a745", "#155724"),
            Self::Failed => ("#f8d7da", "#dc3545", "#721c24"),
            Self::Running => ("#fff3cd", "#ffc107", "#856404"),
            Self::Stopped => ("#e2e3e5", "#6c757d", "#383d41"),
        }
    }

    fn style(self) -> String {
        let (fill, stroke, text) = self.colors();
        format!("fill:{fill},stroke:{stroke},color:{text}")
    }

    fn of(status: RecordStatus) -> Self {
        match status {
            RecordStatus::Completed => Self::Completed,
            RecordStatus::Failed => Self::Failed,
            RecordStatus::Scheduled | RecordStatus::Retrying => Self::Running,
        }
    }
}

/// What is drawn, in drawing order: nodes (with their label lines, already escaped for Mermaid)
/// and arrows; and which node has which class.
#[derive(Default)]
struct Diagram {
    entries: Vec<Entry>,
    classes: Vec<(Class, String)>,
}

/// A node or an arrow of a [`Diagram`].
enum Entry {
    Node { id: String, shape: Shape, lines: Vec<String> },
    Edge { from: String, to: String, dotted: bool },
}

impl Diagram {
    /// Declares a node; `lines` are already escaped.
    fn node(&mut self, id: &str, shape: Shape, lines: &[String]) {
        self.entries.push(Entry::Node { id: id.to_owned(), shape, lines: lines.to_vec() });
    }

    fn edge(&mut self, from: &str, to: &str, dotted: bool) {
        self.entries.push(Entry::Edge { from: from.to_owned(), to: to.to_owned(), dotted });
    }

    /// The class of node `id` (unstyled when it has none).
    fn class_of(&self, id: &str) -> Option<Class> {
        self.classes.iter().find(|(_, node)| node == id).map(|(class, _)| *class)
    }

    /// The diagram as layers, for the renderers that place nodes themselves (SVG, text).
    fn layered(&self) -> Layered<'_> {
        let mut nodes: Vec<LayeredNode<'_>> = Vec::new();
        let mut edges: Vec<(usize, usize, bool)> = Vec::new();
        for entry in &self.entries {
            match entry {
                Entry::Node { id, shape, lines } => nodes.push(LayeredNode {
                    id,
                    shape: *shape,
                    lines: lines.iter().map(|line| plain(line)).collect(),
                    class: self.class_of(id),
                }),
                Entry::Edge { from, to, dotted } => {
                    let index = |id: &str| nodes.iter().position(|node| node.id == id);
                    if let (Some(from), Some(to)) = (index(from), index(to)) {
                        edges.push((from, to, *dotted));
                    }
                }
            }
        }
        // Rows: the longest path from the start. Arrows are drawn after their source, so a pass
        // in drawing order settles every row; the loop only guards against an order that is not.
        let mut row = vec![0_usize; nodes.len()];
        for _ in 0..nodes.len() {
            let mut changed = false;
            for &(from, to, _) in &edges {
                if row[to] <= row[from] {
                    row[to] = row[from] + 1;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let count = row.iter().max().map_or(0, |last| last + 1);
        let rows = (0..count).map(|r| (0..nodes.len()).filter(|&n| row[n] == r).collect()).collect();
        Layered { nodes, edges, rows }
    }

    fn class(&mut self, id: &str, class: Class) {
        self.classes.push((class, id.to_owned()));
    }

    fn step(&mut self, id: &str, step: &DiagramStep<'_>) {
        let (shape, lines) = describe(step);
        self.node(id, shape, &lines);
        self.class(id, Class::of(step.status));
    }

    /// Draws a fan-out after `previous`; returns its join node's id.
    fn fan_out(&mut self, previous: &str, branches: &[&DiagramStep<'_>]) -> String {
        let first = branches.first().map_or(0, |step| step.seq);
        let (fork, join, more) = (format!("f{first}"), format!("j{first}"), format!("m{first}"));
        let total = branches.len();
        self.node(&fork, Shape::Hexagon, &[format!("fan-out: {total} branches")]);
        self.edge(previous, &fork, false);

        let shown = shown_branches(branches);
        let hidden: Vec<&DiagramStep<'_>> =
            branches.iter().enumerate().filter(|(index, _)| !shown.contains(index)).map(|(_, step)| *step).collect();
        let mut ends = Vec::with_capacity(shown.len() + 1);
        for (position, &index) in shown.iter().enumerate() {
            let Some(step) = branches.get(index) else { continue };
            let id = format!("s{}", step.seq);
            self.step(&id, step);
            self.edge(&fork, &id, false);
            ends.push(id);
            // The "more" node stands where the head ends.
            if position + 1 == COLLAPSED_HEAD.min(shown.len()) && !hidden.is_empty() {
                let mut lines = vec![format!("… {} more", hidden.len())];
                lines.extend(count_summary(&hidden));
                self.node(&more, Shape::Box, &lines);
                self.class(&more, aggregate_class(&hidden));
                self.edge(&fork, &more, false);
                ends.push(more.clone());
            }
        }

        let mut lines = vec![format!("join: {total} branches")];
        lines.extend(count_summary(branches));
        self.node(&join, Shape::Hexagon, &lines);
        self.class(&join, aggregate_class(branches));
        for end in &ends {
            self.edge(end, &join, false);
        }
        join
    }

    /// Draws a collapsed run after `previous`; returns its node's id.
    fn run(&mut self, previous: &str, run: &[&DiagramStep<'_>]) -> String {
        let Some(first) = run.first() else { return previous.to_owned() };
        let id = format!("r{}", first.seq);
        let (shape, _) = describe(first);
        let mut lines = vec![format!("{} × {}", run_label(first), run.len())];
        lines.extend(count_summary(run));
        self.node(&id, shape, &lines);
        self.class(&id, aggregate_class(run));
        self.edge(previous, &id, false);
        id
    }

    /// Draws the "… N more steps" node of a capped diagram after `previous`; returns its id.
    fn skipped(&mut self, previous: &str, hidden: &[&DiagramStep<'_>]) -> String {
        let Some(first) = hidden.first() else { return previous.to_owned() };
        let id = format!("x{}", first.seq);
        let mut lines = vec![format!("… {} more steps", hidden.len())];
        lines.extend(count_summary(hidden));
        self.node(&id, Shape::Box, &lines);
        self.class(&id, aggregate_class(hidden));
        self.edge(previous, &id, false);
        id
    }

    /// The Mermaid flowchart (`flowchart TD`).
    fn mermaid(&self) -> String {
        let mut text = String::from("flowchart TD\n");
        for entry in &self.entries {
            match entry {
                Entry::Node { id, shape, lines } => {
                    let (open, close) = shape.brackets();
                    let _ = writeln!(text, "    {id}{open}{}{close}", lines.join("<br/>"));
                }
                Entry::Edge { from, to, dotted } => {
                    let arrow = if *dotted { "-.->" } else { "-->" };
                    let _ = writeln!(text, "    {from} {arrow} {to}");
                }
            }
        }
        for class in Class::ALL {
            let _ = writeln!(text, "    classDef {} {}", class.name(), class.style());
        }
        for class in Class::ALL {
            let ids: Vec<&str> = self.classes.iter().filter(|(c, _)| *c == class).map(|(_, id)| id.as_str()).collect();
            if !ids.is_empty() {
                let _ = writeln!(text, "    class {} {}", ids.join(","), class.name());
            }
        }
        text
    }
}

/// A diagram as layers: its nodes in drawing order (labels as plain text), its arrows by node
/// index, and its rows, each node in the row of its longest path from the start, in drawing order
/// within a row.
struct Layered<'d> {
    nodes: Vec<LayeredNode<'d>>,
    edges: Vec<(usize, usize, bool)>,
    rows: Vec<Vec<usize>>,
}

struct LayeredNode<'d> {
    id: &'d str,
    shape: Shape,
    lines: Vec<String>,
    class: Option<Class>,
}

/// A Mermaid label line as plain text: its entity codes (`#quot;`, `#35;`, ...) turned back into
/// the characters they stand for. [`escape`] writes every `#` of the text as `#35;`, so each `#`
/// here starts a code.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('#') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let code = rest[1..].find(';').map(|end| &rest[1..=end]);
        let character = code.and_then(|code| match code {
            "quot" => Some('"'),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            number => number.parse::<u32>().ok().and_then(char::from_u32),
        });
        match (code, character) {
            (Some(code), Some(character)) => {
                out.push(character);
                rest = &rest[code.len() + 2..];
            }
            _ => {
                out.push('#');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Indices (ascending) of the branches a fan-out draws: all of them up to [`COLLAPSE_ABOVE`];
/// else the first few, the earliest failed, then retrying, then waiting ones, and the last.
fn shown_branches(branches: &[&DiagramStep<'_>]) -> Vec<usize> {
    let total = branches.len();
    if total <= COLLAPSE_ABOVE {
        return (0..total).collect();
    }
    let mut shown: Vec<usize> = (0..COLLAPSED_HEAD).collect();
    let middle = COLLAPSED_HEAD..total - 1;
    for wanted in [RecordStatus::Failed, RecordStatus::Retrying, RecordStatus::Scheduled] {
        let room = COLLAPSED_ATTENTION.saturating_sub(shown.len() - COLLAPSED_HEAD);
        let picks = middle.clone().filter(|&index| branches.get(index).is_some_and(|step| step.status == wanted));
        shown.extend(picks.take(room));
    }
    shown.push(total - 1);
    shown.sort_unstable();
    shown
}

/// "3 completed, 1 failed, 2 running" (only the non-zero counts), as one line.
fn count_summary(steps: &[&DiagramStep<'_>]) -> Option<String> {
    let count = |status: RecordStatus| steps.iter().filter(|step| step.status == status).count();
    let parts: Vec<String> = [
        (count(RecordStatus::Completed), "completed"),
        (count(RecordStatus::Failed), "failed"),
        (count(RecordStatus::Retrying), "retrying"),
        (count(RecordStatus::Scheduled), "running"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Failed if any failed, else running if any has not finished, else completed.
fn aggregate_class(steps: &[&DiagramStep<'_>]) -> Class {
    if steps.iter().any(|step| step.status == RecordStatus::Failed) {
        Class::Failed
    } else if steps.iter().any(|step| step.status != RecordStatus::Completed) {
        Class::Running
    } else {
        Class::Completed
    }
}

/// What a collapsed run of `step`'s kind and name is called (escaped).
fn run_label(step: &DiagramStep<'_>) -> String {
    let name = escape(&truncate(step.name));
    match step.kind {
        StepKind::Activity => name,
        StepKind::Timer => "sleep".to_owned(),
        StepKind::Event => format!("event `{name}`"),
        StepKind::Child => format!("child workflow `{name}`"),
        StepKind::Race => "race".to_owned(),
        other => format!("{} `{name}`", other.as_str()),
    }
}

/// A step's shape and (escaped) label lines.
fn describe(step: &DiagramStep<'_>) -> (Shape, Vec<String>) {
    let name = escape(&truncate(step.name));
    let failure = step.payload.map(StoredFailure::read);
    match step.kind {
        StepKind::Activity => {
            let attempts = failure.as_ref().map_or(0, |f| f.attempts).max(step.attempt);
            let mut lines = vec![match attempts {
                0 | 1 => name,
                n => format!("{name} ({n} attempts)"),
            }];
            match step.status {
                RecordStatus::Completed => lines.extend(output_line(step.payload)),
                RecordStatus::Failed => lines.extend(failure.as_ref().map(|f| failure_line(f, "failed"))),
                RecordStatus::Retrying => {
                    lines.push(match step.due_at {
                        Some(due) => format!("retrying at {}", utc(due)),
                        None => "retrying".to_owned(),
                    });
                    lines.extend(failure.as_ref().map(|f| failure_line(f, "last error")));
                }
                RecordStatus::Scheduled => lines.push("running".to_owned()),
            }
            (Shape::Box, lines)
        }
        StepKind::Timer => {
            let verb = if step.status == RecordStatus::Completed { "slept" } else { "sleep" };
            let line = match step.due_at {
                Some(due) => format!("{verb} until {}", utc(due)),
                None => verb.to_owned(),
            };
            let mut lines = vec![line];
            if step.status == RecordStatus::Failed {
                lines.extend(failure.as_ref().map(|f| failure_line(f, "failed")));
            }
            (Shape::Parallelogram, lines)
        }
        StepKind::Event => {
            let mut lines = Vec::new();
            match step.status {
                RecordStatus::Completed => {
                    lines.push(format!("event `{name}` received"));
                    lines.extend(output_line(step.payload));
                }
                RecordStatus::Failed => {
                    lines.push(format!("wait for event `{name}`"));
                    lines.push(match step.due_at {
                        Some(due) => format!("timed out at {}", utc(due)),
                        None => "timed out".to_owned(),
                    });
                }
                RecordStatus::Scheduled | RecordStatus::Retrying => {
                    lines.push(format!("wait for event `{name}`"));
                    lines.extend(step.due_at.map(|due| format!("timeout at {}", utc(due))));
                }
            }
            (Shape::Flag, lines)
        }
        StepKind::Child => {
            let mut lines = vec![format!("child workflow `{name}`")];
            match step.status {
                RecordStatus::Completed => lines.extend(output_line(step.payload)),
                RecordStatus::Failed => lines.extend(failure.as_ref().map(|f| failure_line(f, "failed"))),
                RecordStatus::Scheduled | RecordStatus::Retrying => lines.push("running".to_owned()),
            }
            (Shape::Subroutine, lines)
        }
        StepKind::Race => {
            let line = match (step.status, step.payload.map(str::trim)) {
                (RecordStatus::Completed, Some("0")) => "race: first won".to_owned(),
                (RecordStatus::Completed, Some("1")) => "race: second won".to_owned(),
                (_, Some(other)) => format!("race: {}", escape(&truncate(other))),
                (_, None) => "race".to_owned(),
            };
            (Shape::Diamond, vec![line])
        }
        other => {
            let mut lines = vec![format!("{} `{name}`", other.as_str())];
            match step.status {
                RecordStatus::Completed => lines.extend(output_line(step.payload)),
                RecordStatus::Failed => lines.extend(failure.as_ref().map(|f| failure_line(f, "failed"))),
                RecordStatus::Retrying => lines.push("retrying".to_owned()),
                RecordStatus::Scheduled => lines.push("running".to_owned()),
            }
            (Shape::Box, lines)
        }
    }
}

/// "→ output" for a completed step's output; nothing for no output or `null`.
fn output_line(payload: Option<&str>) -> Option<String> {
    let payload = payload.map(str::trim).filter(|p| !p.is_empty() && *p != "null")?;
    Some(format!("→ {}", escape(&truncate(payload))))
}

/// "failed: ChildFailed: message", escaped and truncated.
fn failure_line(failure: &StoredFailure, prefix: &str) -> String {
    let text = match &failure.error_type {
        Some(error_type) => format!("{error_type}: {}", failure.message),
        None => failure.message.clone(),
    };
    format!("{prefix}: {}", escape(&truncate(&text)))
}

fn end_status_text(status: RuntimeStatus) -> &'static str {
    match status {
        RuntimeStatus::ContinuedAsNew => "Continued as new",
        other => other.as_str(),
    }
}

fn end_class(status: RuntimeStatus) -> Class {
    match status {
        RuntimeStatus::Completed | RuntimeStatus::ContinuedAsNew => Class::Completed,
        RuntimeStatus::Failed => Class::Failed,
        RuntimeStatus::Pending | RuntimeStatus::Running | RuntimeStatus::Suspended => Class::Running,
        RuntimeStatus::Terminated => Class::Stopped,
    }
}

/// At most [`MAX_TEXT`] characters of `text`, ending in "…" when cut.
fn truncate(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_TEXT - 1).collect();
    cut.push('…');
    cut
}

/// Text made safe inside a quoted Mermaid label: characters Mermaid or HTML would read become
/// entity codes (`#quot;`, `#35;`, ...), line breaks and other control characters spaces.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#amp;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '[' => out.push_str("#91;"),
            ']' => out.push_str("#93;"),
            '{' => out.push_str("#123;"),
            '}' => out.push_str("#125;"),
            '(' => out.push_str("#40;"),
            ')' => out.push_str("#41;"),
            '|' => out.push_str("#124;"),
            '`' => out.push_str("#96;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A store time as an RFC 3339 UTC timestamp, with milliseconds only when there are some
/// (`2026-12-01T10:00:00Z`); "never" for [`NEVER`].
fn utc(ms: Millis) -> String {
    if ms == NEVER {
        return "never".to_owned();
    }
    let text = crate::model::time::rfc3339(ms);
    match text.strip_suffix(".000Z") {
        Some(whole_seconds) => format!("{whole_seconds}Z"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC_1_2026_10H: Millis = 1_796_119_200_000;

    fn step(seq: u32, kind: &'static str, name: &'static str, status: RecordStatus) -> DiagramStep<'static> {
        let kind = StepKind::parse(kind).expect("a stored step kind");
        DiagramStep { seq, kind, name, status, attempt: 1, payload: None, due_at: None, parallel_group: None }
    }

    fn instance(status: RuntimeStatus) -> DiagramInstance<'static> {
        DiagramInstance { id: "order-42", workflow: "order_flow", status, error_message: None }
    }

    fn has_line(out: &str, line: &str) -> bool {
        out.lines().any(|l| l.trim() == line)
    }

    #[test]
    fn mermaid_codes_come_back_as_text() {
        assert_eq!(plain("a #quot;b#quot; #35;1 #lt;x#gt; #123;#125; #amp; #96;"), "a \"b\" #1 <x> {} & `");
        assert_eq!(plain("# #nope; #"), "# #nope; #", "what is not a code stays");
        assert_eq!(plain(&escape("<b>#1 & \"q\" [x] {y} (z) | `w`</b>")), "<b>#1 & \"q\" [x] {y} (z) | `w`</b>");
    }

    /// The text draws the same nodes top to bottom, marked by state, a fan-out's branches as a
    /// list under its fork, and a dotted line before an end not reached yet.
    #[test]
    fn text_lists_a_fan_out_under_its_fork() {
        let branch = |seq, status| DiagramStep { parallel_group: Some(1), ..step(seq, "activity", "resize", status) };
        let steps = [
            DiagramStep { payload: Some("3"), ..step(0, "activity", "list", RecordStatus::Completed) },
            branch(1, RecordStatus::Completed),
            branch(2, RecordStatus::Failed),
            branch(3, RecordStatus::Completed),
            step(4, "timer", "sleep", RecordStatus::Scheduled),
        ];
        let text = render_text(&instance(RuntimeStatus::Running), &steps);
        let expected = "order_flow · order-42\n│\n✓ list · → 3\n│\n◇ fan-out: 3 branches\n├── ✓ resize\n├── ✗ resize\n\
                        └── ✓ resize\n✗ join: 3 branches · 2 completed, 1 failed\n│\n… sleep\n┆\n… Running\n";
        assert_eq!(text, expected, "{text}");
    }

    /// The picture draws the Mermaid text's nodes and arrows, a fan-out's branches in one row,
    /// and every label as escaped text.
    #[test]
    fn svg_draws_the_same_nodes_in_rows() {
        let branch = |seq, status| DiagramStep { parallel_group: Some(1), ..step(seq, "activity", "resize", status) };
        let steps = [
            DiagramStep {
                payload: Some(r#""<script>alert('x')</script>""#),
                ..step(0, "activity", "list", RecordStatus::Completed)
            },
            branch(1, RecordStatus::Completed),
            branch(2, RecordStatus::Failed),
            branch(3, RecordStatus::Completed),
            step(4, "timer", "sleep", RecordStatus::Scheduled),
        ];
        let failed = DiagramInstance { error_message: Some("boom & <b>bold</b>"), ..instance(RuntimeStatus::Running) };
        let svg = render_svg(&failed, &steps);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script") && !svg.contains("<b>"), "labels are text: {svg}");
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{svg}");
        assert!(svg.contains("boom &amp; &lt;b&gt;bold&lt;/b&gt;"), "{svg}");
        let mermaid = render_mermaid(&failed, &steps);
        let arrows = mermaid.lines().filter(|line| line.contains("-->") || line.contains("-.->")).count();
        assert_eq!(svg.matches("marker-end=").count(), arrows, "one arrow per Mermaid arrow");
        assert_eq!(svg.matches("stroke-dasharray").count(), 1, "the unfinished end's arrow is dotted");
        // Where each node's outline starts (its first y coordinate).
        let top = |id: &str| -> f64 {
            let at = svg.find(&format!("data-id=\"{id}\"")).unwrap_or_else(|| panic!("no node {id}: {svg}"));
            let rest = &svg[at..];
            let y = rest.find(" y=\"").map(|i| &rest[i + 4..]).unwrap_or_else(|| panic!("{id} has no y"));
            y[..y.find('"').unwrap()].parse().unwrap()
        };
        assert_eq!(top("s1"), top("s2"));
        assert_eq!(top("s2"), top("s3"));
        let order = ["start", "s0", "f1", "s1", "j1", "s4", "finish"];
        for pair in order.windows(2) {
            assert!(top(pair[0]) < top(pair[1]), "{} above {}", pair[0], pair[1]);
        }
        assert_eq!(svg, render_svg(&failed, &steps), "deterministic");
    }

    #[test]
    fn chain_of_activities_with_a_retry() {
        let steps = [
            DiagramStep { payload: Some("true"), ..step(0, "activity", "validate", RecordStatus::Completed) },
            DiagramStep {
                attempt: 3,
                payload: Some(r#"{"id":"ch_1"}"#),
                ..step(1, "activity", "charge_card", RecordStatus::Completed)
            },
            DiagramStep { payload: Some("null"), ..step(2, "activity", "ship", RecordStatus::Completed) },
        ];
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        assert!(out.starts_with("flowchart TD\n"));
        assert!(has_line(&out, r#"start(["order_flow<br/>order-42"])"#), "{out}");
        assert!(has_line(&out, r#"s0["validate<br/>→ true"]"#), "{out}");
        assert!(
            has_line(&out, r#"s1["charge_card (3 attempts)<br/>→ #123;#quot;id#quot;:#quot;ch_1#quot;#125;"]"#),
            "{out}"
        );
        assert!(has_line(&out, r#"s2["ship"]"#), "{out}");
        for edge in ["start --> s0", "s0 --> s1", "s1 --> s2", "s2 --> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert!(has_line(&out, r#"finish(["Completed"])"#), "{out}");
        assert!(has_line(&out, "class s0,s1,s2,finish completed"), "{out}");
        assert!(out.contains("classDef completed fill:"));
        // Deterministic, and independent of the order steps come in.
        let mut reversed = steps;
        reversed.reverse();
        assert_eq!(out, render_mermaid(&instance(RuntimeStatus::Completed), &reversed));
    }

    #[test]
    fn retrying_step_shows_its_next_due_time_and_last_error() {
        let steps = [DiagramStep {
            attempt: 2,
            due_at: Some(DEC_1_2026_10H),
            payload: Some(r#"{"message":"card declined","attempts":2}"#),
            ..step(0, "activity", "charge_card", RecordStatus::Retrying)
        }];
        let out = render_mermaid(&instance(RuntimeStatus::Running), &steps);
        assert!(
            has_line(
                &out,
                r#"s0["charge_card (2 attempts)<br/>retrying at 2026-12-01T10:00:00Z<br/>last error: card declined"]"#
            ),
            "{out}"
        );
        assert!(has_line(&out, "s0 -.-> finish"), "{out}");
        assert!(has_line(&out, "class s0,finish running"), "{out}");
    }

    #[test]
    fn fan_out_of_three_is_drawn_side_by_side() {
        let branch = |seq, status| DiagramStep { parallel_group: Some(1), ..step(seq, "activity", "resize", status) };
        let steps = [
            step(0, "activity", "list", RecordStatus::Completed),
            branch(1, RecordStatus::Completed),
            branch(2, RecordStatus::Failed),
            branch(3, RecordStatus::Completed),
            step(4, "activity", "report", RecordStatus::Completed),
        ];
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        for edge in [
            "start --> s0",
            "s0 --> f1",
            "f1 --> s1",
            "f1 --> s2",
            "f1 --> s3",
            "s1 --> j1",
            "s2 --> j1",
            "s3 --> j1",
            "j1 --> s4",
            "s4 --> finish",
        ] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert_eq!(out.lines().filter(|l| l.contains("-->")).count(), 10, "{out}");
        assert!(has_line(&out, r#"f1{{"fan-out: 3 branches"}}"#), "{out}");
        assert!(has_line(&out, r#"j1{{"join: 3 branches<br/>2 completed, 1 failed"}}"#), "{out}");
        assert!(has_line(&out, "class s2,j1 failed"), "{out}");
    }

    #[test]
    fn two_fan_outs_in_a_row_stay_apart() {
        let branch = |seq, group| DiagramStep {
            parallel_group: Some(group),
            ..step(seq, "activity", "work", RecordStatus::Completed)
        };
        let steps = [branch(0, 0), branch(1, 0), branch(2, 2), branch(3, 2)];
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        for edge in ["start --> f0", "f0 --> s0", "s1 --> j0", "j0 --> f2", "f2 --> s2", "s3 --> j2", "j2 --> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
    }

    #[test]
    fn fan_out_of_a_thousand_is_collapsed() {
        let mut steps = vec![step(0, "activity", "list", RecordStatus::Completed)];
        steps.extend((1..=1000).map(|seq| {
            let status = if seq == 500 { RecordStatus::Failed } else { RecordStatus::Completed };
            DiagramStep {
                parallel_group: Some(1),
                payload: (seq == 500).then_some(r#"{"message":"boom","attempts":3}"#),
                attempt: if seq == 500 { 3 } else { 1 },
                ..step(seq, "activity", "resize", status)
            }
        }));
        steps.push(step(1001, "activity", "report", RecordStatus::Completed));
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        assert!(out.lines().count() < 40, "{} lines: {out}", out.lines().count());
        assert!(has_line(&out, r#"f1{{"fan-out: 1000 branches"}}"#), "{out}");
        assert!(has_line(&out, r#"j1{{"join: 1000 branches<br/>999 completed, 1 failed"}}"#), "{out}");
        // The first three, the failed one, a "more" node and the last.
        for edge in ["f1 --> s1", "f1 --> s2", "f1 --> s3", "f1 --> m1", "f1 --> s500", "f1 --> s1000"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert_eq!(out.lines().filter(|l| l.trim().starts_with("f1 -->")).count(), 6, "{out}");
        assert!(has_line(&out, r#"m1["… 995 more<br/>995 completed"]"#), "{out}");
        assert!(has_line(&out, r#"s500["resize (3 attempts)<br/>failed: boom"]"#), "{out}");
        assert!(has_line(&out, "j1 --> s1001"), "{out}");
    }

    #[test]
    fn timer_event_timeout_child_failure_and_failed_instance() {
        let steps = [
            DiagramStep { due_at: Some(DEC_1_2026_10H), ..step(0, "timer", "sleep", RecordStatus::Completed) },
            step(1, "now", "now", RecordStatus::Completed),
            DiagramStep {
                payload: Some(r#"{"message":"timed out waiting for event `approval`","attempts":1}"#),
                ..step(2, "event", "approval", RecordStatus::Failed)
            },
            DiagramStep {
                payload: Some(r#"{"error_type":"ActivityFailed","message":"no stock"}"#),
                ..step(3, "child", "reserve_stock", RecordStatus::Failed)
            },
        ];
        let failed = DiagramInstance {
            error_message: Some("child workflow `reserve_stock` failed: no stock"),
            ..instance(RuntimeStatus::Failed)
        };
        let out = render_mermaid(&failed, &steps);
        assert!(has_line(&out, r#"s0[/"slept until 2026-12-01T10:00:00Z"/]"#), "{out}");
        assert!(!out.contains("s1"), "recorded values are not drawn: {out}");
        assert!(has_line(&out, r#"s2>"wait for event `approval`<br/>timed out"]"#), "{out}");
        assert!(
            has_line(&out, r#"s3[["child workflow `reserve_stock`<br/>failed: ActivityFailed: no stock"]]"#),
            "{out}"
        );
        assert!(
            has_line(&out, r#"finish(["Failed<br/>child workflow #96;reserve_stock#96; failed: no stock"])"#),
            "{out}"
        );
        for edge in ["start --> s0", "s0 --> s2", "s2 --> s3", "s3 --> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert!(has_line(&out, "class s0 completed"), "{out}");
        assert!(has_line(&out, "class s2,s3,finish failed"), "{out}");
    }

    #[test]
    fn waiting_steps_and_race() {
        let steps = [
            DiagramStep { due_at: Some(DEC_1_2026_10H), ..step(0, "timer", "sleep", RecordStatus::Scheduled) },
            DiagramStep { due_at: Some(DEC_1_2026_10H), ..step(1, "event", "approval", RecordStatus::Scheduled) },
            DiagramStep { payload: Some("1"), ..step(2, "race", "race", RecordStatus::Completed) },
            step(3, "child", "billing", RecordStatus::Scheduled),
        ];
        let out = render_mermaid(&instance(RuntimeStatus::Suspended), &steps);
        assert!(has_line(&out, r#"s0[/"sleep until 2026-12-01T10:00:00Z"/]"#), "{out}");
        assert!(has_line(&out, r#"s1>"wait for event `approval`<br/>timeout at 2026-12-01T10:00:00Z"]"#), "{out}");
        assert!(has_line(&out, r#"s2{"race: second won"}"#), "{out}");
        assert!(has_line(&out, r#"s3[["child workflow `billing`<br/>running"]]"#), "{out}");
        assert!(has_line(&out, r#"finish(["Suspended"])"#), "{out}");
        assert!(has_line(&out, "s3 -.-> finish"), "{out}");
    }

    #[test]
    fn labels_are_escaped_and_truncated() {
        let payload = "{\"note\": \"say \\\"hi\\\" [now]\", \"tag\": \"#1 <b>\"}\nsecond line";
        let steps =
            [DiagramStep { payload: Some(payload), ..step(0, "activity", "odd\"name]", RecordStatus::Completed) }];
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        let node = out.lines().find(|l| l.trim_start().starts_with("s0[")).unwrap_or_default();
        let label = node.trim().strip_prefix("s0[\"").and_then(|l| l.strip_suffix("\"]")).unwrap_or_default();
        assert!(!label.is_empty(), "{out}");
        for raw in ['"', '[', ']', '{', '}', '<', '>', '\n'] {
            assert!(!label.replace("<br/>", "").contains(raw), "raw {raw:?} in {label}");
        }
        assert!(label
            .starts_with("odd#quot;name#93;<br/>→ #123;#quot;note#quot;: #quot;say \\#quot;hi\\#quot; #91;now#93;"));
        assert!(label.contains("#35;1 #lt;b#gt;"), "{label}");
        // The newline became a space: the node stays on one line.
        assert!(label.ends_with("#125; second line"), "{label}");

        // Long payloads are cut to 60 characters (before escaping), the cut marked.
        let long = format!("\"{}\"", "y".repeat(100));
        let steps = [DiagramStep { payload: Some(&long), ..step(0, "activity", "a", RecordStatus::Completed) }];
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        assert!(has_line(&out, &format!("s0[\"a<br/>→ #quot;{}…\"]", "y".repeat(58))), "{out}");

        let long = "x".repeat(200);
        assert_eq!(truncate(&long).chars().count(), MAX_TEXT);
        assert_eq!(escape("a\nb\r\tc"), "a b  c");
    }

    #[test]
    fn empty_history_of_a_pending_instance() {
        let out = render_mermaid(&instance(RuntimeStatus::Pending), &[]);
        assert_eq!(
            out.lines().take(4).collect::<Vec<_>>(),
            [
                "flowchart TD",
                r#"    start(["order_flow<br/>order-42"])"#,
                r#"    finish(["Pending"])"#,
                "    start -.-> finish"
            ]
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_709_208_000_000), "2024-02-29T12:00:00Z");
        assert_eq!(utc(DEC_1_2026_10H), "2026-12-01T10:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(NEVER), "never");
    }

    #[test]
    fn long_runs_of_one_step_collapse_into_one_node() {
        let mut steps: Vec<DiagramStep<'static>> =
            (0..1000).map(|seq| step(seq, "activity", "poll", RecordStatus::Completed)).collect();
        steps.push(step(1000, "activity", "ship", RecordStatus::Completed));
        steps.extend((1001..1005).map(|seq| step(seq, "timer", "sleep", RecordStatus::Completed)));
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        assert!(has_line(&out, r#"r0["poll × 1000<br/>1000 completed"]"#), "{out}");
        for edge in ["start --> r0", "r0 --> s1000", "s1000 --> s1001", "s1004 --> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert!(!out.contains("s1[") && !out.contains("s999["), "the run's steps are not drawn: {out}");
        assert!(out.contains("s1003[/"), "a run of 4 stays as it is: {out}");
        assert!(out.lines().count() < 30, "{out}");
    }

    #[test]
    fn a_run_ending_in_an_unfinished_step_draws_that_step() {
        let mut steps: Vec<DiagramStep<'static>> =
            (0..7).map(|seq| step(seq, "activity", "poll", RecordStatus::Completed)).collect();
        steps.push(DiagramStep {
            attempt: 2,
            due_at: Some(DEC_1_2026_10H),
            ..step(7, "activity", "poll", RecordStatus::Retrying)
        });
        let out = render_mermaid(&instance(RuntimeStatus::Running), &steps);
        assert!(has_line(&out, r#"r0["poll × 7<br/>7 completed"]"#), "{out}");
        assert!(out.contains(r#"s7["poll (2 attempts)<br/>retrying at 2026-12-01T10:00:00Z"]"#), "{out}");
        for edge in ["start --> r0", "r0 --> s7", "s7 -.-> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
    }

    #[test]
    fn a_long_history_is_capped() {
        let names = ["a", "b"];
        let steps: Vec<DiagramStep<'static>> = (0..10_000)
            .map(|seq| {
                let status = if seq == 5_000 { RecordStatus::Failed } else { RecordStatus::Completed };
                step(seq, "activity", names[seq as usize % 2], status)
            })
            .collect();
        let out = render_mermaid(&instance(RuntimeStatus::Completed), &steps);
        assert!(has_line(&out, r#"x60["… 9910 more steps<br/>9909 completed, 1 failed"]"#), "{out}");
        for edge in ["s59 --> x60", "x60 --> s9970", "s9999 --> finish"] {
            assert!(has_line(&out, edge), "missing {edge}: {out}");
        }
        assert!(out.lines().count() < 250, "{} lines", out.lines().count());
    }
}
