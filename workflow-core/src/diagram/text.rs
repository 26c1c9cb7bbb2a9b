//! The diagram as text for a terminal: one line per node, top to bottom, a fan-out's branches as
//! a list under its fork.

use super::{Class, Diagram, Shape};

/// The mark before a node: its state, or `◇` for a fork or join that has none.
fn mark(class: Option<Class>, shape: Shape) -> &'static str {
    match (class, shape) {
        (Some(Class::Completed), _) => "✓ ",
        (Some(Class::Failed), _) => "✗ ",
        (Some(Class::Running), _) => "… ",
        (Some(Class::Stopped), _) => "■ ",
        (None, Shape::Hexagon) => "◇ ",
        (None, _) => "",
    }
}

/// The text of `diagram`.
pub(super) fn render(diagram: &Diagram) -> String {
    let layered = diagram.layered();
    let label = |n: usize| {
        let node = &layered.nodes[n];
        format!("{}{}", mark(node.class, node.shape), node.lines.join(" · "))
    };
    // Whether the arrows into row `r` are dotted (an end not reached yet).
    let dotted = |r: usize| {
        layered.edges.iter().any(|&(_, to, dotted)| dotted && layered.rows.get(r).is_some_and(|row| row.contains(&to)))
    };
    let mut text = String::new();
    for (r, row) in layered.rows.iter().enumerate() {
        match row.as_slice() {
            [one] => {
                if r > 0 && layered.rows[r - 1].len() == 1 {
                    text.push_str(if dotted(r) { "┆\n" } else { "│\n" });
                }
                text.push_str(&label(*one));
                text.push('\n');
            }
            branches => {
                for (i, &n) in branches.iter().enumerate() {
                    text.push_str(if i + 1 == branches.len() { "└── " } else { "├── " });
                    text.push_str(&label(n));
                    text.push('\n');
                }
            }
        }
    }
    text
}
