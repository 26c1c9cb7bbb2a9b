//! The diagram as a picture: an SVG document of the same nodes and arrows as the Mermaid text.
//!
//! The graph is a chain of steps with fan-outs between a fork and a join, so a layered layout is
//! exact: each node goes in the row of its longest path from the start, the nodes of a row side
//! by side in drawing order, each row centred, each arrow from the bottom of its source to the top
//! of its target. Labels come from the Mermaid lines (whose entity codes are undone here) and are
//! written as XML text, so nothing recorded in a journal can become markup.

use std::fmt::Write as _;

use super::{Class, Diagram, Shape};

/// The font size of labels, in pixels.
const FONT_SIZE: f64 = 12.0;
/// The width one character of a label is given (a sans-serif average at [`FONT_SIZE`]).
const CHAR_WIDTH: f64 = 7.0;
/// The height of one label line.
const LINE_HEIGHT: f64 = 16.0;
/// Space inside a node, around its label.
const PAD_X: f64 = 14.0;
const PAD_Y: f64 = 8.0;
/// Space between nodes of a row, between rows, and around the picture.
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 36.0;
const MARGIN: f64 = 16.0;
/// The narrowest node.
const MIN_WIDTH: f64 = 80.0;
/// Fill, stroke and text colours of a node without a class (the start, a fork).
const PLAIN: (&str, &str, &str) = ("#f8f9fa", "#6c757d", "#212529");

/// A node where it is drawn: top-left corner and size.
struct Placed<'d> {
    id: &'d str,
    shape: Shape,
    lines: &'d [String],
    class: Option<Class>,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

/// The SVG document of `diagram`.
pub(super) fn render(diagram: &Diagram) -> String {
    let layered = diagram.layered();
    let mut nodes: Vec<Placed<'_>> = layered
        .nodes
        .iter()
        .map(|node| {
            let widest = node.lines.iter().map(|line| line.chars().count()).max().unwrap_or(0);
            let height = node.lines.len().max(1) as f64 * LINE_HEIGHT + 2.0 * PAD_Y;
            let width = (widest as f64 * CHAR_WIDTH + 2.0 * PAD_X + shape_room(node.shape, height)).max(MIN_WIDTH);
            Placed {
                id: node.id,
                shape: node.shape,
                lines: &node.lines,
                class: node.class,
                x: 0.0,
                y: 0.0,
                width,
                height,
            }
        })
        .collect();
    let edges = &layered.edges;
    let widths: Vec<f64> = layered
        .rows
        .iter()
        .map(|members| {
            members.iter().map(|&n| nodes[n].width).sum::<f64>() + GAP_X * members.len().saturating_sub(1) as f64
        })
        .collect();
    let width = widths.iter().copied().fold(MIN_WIDTH, f64::max) + 2.0 * MARGIN;
    let mut y = MARGIN;
    for (members, row_width) in layered.rows.iter().zip(&widths) {
        let mut x = (width - row_width) / 2.0;
        let tallest = members.iter().map(|&n| nodes[n].height).fold(0.0, f64::max);
        for &n in members {
            let node = &mut nodes[n];
            (node.x, node.y) = (x, y + (tallest - node.height) / 2.0);
            x += node.width + GAP_X;
        }
        y += tallest + GAP_Y;
    }
    let height = y - GAP_Y + MARGIN;

    let mut svg = String::new();
    let title = nodes.first().map(|start| start.lines.join(" ")).unwrap_or_default();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" font-family=\"system-ui, sans-serif\" \
         font-size=\"{FONT_SIZE}\"><title>{}</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/>\
         </marker></defs>",
        xml(&title)
    );
    for &(from, to, dotted) in edges {
        let (a, b) = (&nodes[from], &nodes[to]);
        let (x1, y1, x2, y2) = (a.x + a.width / 2.0, a.y + a.height, b.x + b.width / 2.0, b.y);
        let middle = (y1 + y2) / 2.0;
        let dash = if dotted { " stroke-dasharray=\"4 4\"" } else { "" };
        let _ = write!(
            svg,
            "<path d=\"M{x1:.1},{y1:.1} C{x1:.1},{middle:.1} {x2:.1},{middle:.1} {x2:.1},{y2:.1}\" fill=\"none\" \
             stroke=\"#555\" stroke-width=\"1.2\"{dash} marker-end=\"url(#arrow)\"/>"
        );
    }
    for node in &nodes {
        let (fill, stroke, text) = node.class.map_or(PLAIN, Class::colors);
        let _ = write!(svg, "<g class=\"node\" data-id=\"{}\">", xml(node.id));
        let paint = format!("fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"");
        let _ = write!(svg, "{}", outline(node, &paint));
        let first = node.y + PAD_Y + LINE_HEIGHT / 2.0 + FONT_SIZE * 0.35;
        let centre = node.x + node.width / 2.0 + shape_shift(node.shape);
        let _ = write!(svg, "<text fill=\"{text}\" text-anchor=\"middle\">");
        for (n, line) in node.lines.iter().enumerate() {
            let line_y = first + n as f64 * LINE_HEIGHT;
            let _ = write!(svg, "<tspan x=\"{centre:.1}\" y=\"{line_y:.1}\">{}</tspan>", xml(line));
        }
        svg.push_str("</text></g>");
    }
    svg.push_str("</svg>\n");
    svg
}

/// The extra width a shape needs beside its label (slanted or pointed sides).
fn shape_room(shape: Shape, height: f64) -> f64 {
    match shape {
        Shape::Parallelogram => 20.0,
        Shape::Flag => 12.0,
        Shape::Hexagon => 24.0,
        Shape::Diamond => height,
        Shape::Box | Shape::Stadium | Shape::Subroutine => 0.0,
    }
}

/// How far right of centre a shape's label sits (a flag's notch takes room on its left).
fn shape_shift(shape: Shape) -> f64 {
    match shape {
        Shape::Flag => 6.0,
        _ => 0.0,
    }
}

/// The outline of `node`, painted with `paint`.
fn outline(node: &Placed<'_>, paint: &str) -> String {
    let (x, y, w, h) = (node.x, node.y, node.width, node.height);
    let polygon = |points: &[(f64, f64)]| {
        let points: Vec<String> = points.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
        format!("<polygon points=\"{}\" {paint}/>", points.join(" "))
    };
    let rect = |radius: f64| {
        format!("<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{radius:.1}\" {paint}/>")
    };
    match node.shape {
        Shape::Box => rect(4.0),
        Shape::Stadium => rect(h / 2.0),
        Shape::Subroutine => {
            let bars: String = [x + 7.0, x + w - 7.0]
                .iter()
                .map(|bx| format!("<line x1=\"{bx:.1}\" y1=\"{y:.1}\" x2=\"{bx:.1}\" y2=\"{:.1}\" {paint}/>", y + h))
                .collect();
            format!("{}{bars}", rect(0.0))
        }
        Shape::Parallelogram => polygon(&[(x + 10.0, y), (x + w, y), (x + w - 10.0, y + h), (x, y + h)]),
        Shape::Flag => polygon(&[(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x + 12.0, y + h / 2.0)]),
        Shape::Hexagon | Shape::Diamond => {
            let inset = if matches!(node.shape, Shape::Diamond) { h / 2.0 } else { 12.0 };
            polygon(&[
                (x, y + h / 2.0),
                (x + inset, y),
                (x + w - inset, y),
                (x + w, y + h / 2.0),
                (x + w - inset, y + h),
                (x + inset, y + h),
            ])
        }
    }
}

/// `text` as XML character data or an attribute value.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(
            xml("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
    }
}
