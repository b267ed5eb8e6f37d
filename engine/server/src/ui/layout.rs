//! A story's graph laid out on the server, top to bottom, for the web UI:
//! layers by longest path from the entry points, the order within a layer
//! by barycentres (a few sweeps down and up), positions from the order.
//! Deterministic: the same story always gives the same picture (the
//! snapshot tests hold it), and ties keep the story's own order.

/// A node's box, in SVG units.
pub(crate) const NODE_W: f64 = 176.0;
pub(crate) const NODE_H: f64 = 48.0;
const H_GAP: f64 = 32.0;
const V_GAP: f64 = 56.0;
const MARGIN: f64 = 16.0;
/// Barycentre sweeps (each one down and one up).
const SWEEPS: usize = 4;

/// What to lay out: nodes in the story's order, edges by index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: usize,
    /// (from, to, branch): the branch is `None` for the main output.
    pub(crate) edges: Vec<(usize, usize, Option<String>)>,
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub(crate) width: f64,
    pub(crate) height: f64,
    /// Top-left corner of each node's box, by node index.
    pub(crate) nodes: Vec<(f64, f64)>,
    pub(crate) edges: Vec<EdgePath>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EdgePath {
    pub(crate) from: usize,
    pub(crate) to: usize,
    /// An SVG path: a cubic curve from the bottom of `from` to the top of `to`.
    pub(crate) d: String,
    pub(crate) branch: Option<String>,
    /// Where the branch label goes.
    pub(crate) label_at: (f64, f64),
    /// Goes up (an edge against the layering: a cycle in a broken story).
    pub(crate) back: bool,
}

/// Width a long edge takes where it passes a layer.
const DUMMY_W: f64 = 12.0;

/// Lays out `g`. An edge spanning several layers passes each layer between
/// its ends as a thin placeholder, ordered with the nodes: it goes around
/// the boxes in between instead of through them.
pub(crate) fn layout(g: &Graph) -> Layout {
    let mut layer = layers(g);
    let depth = layer.iter().copied().max().map_or(0, |m| m + 1);
    // Placeholders (indices from `g.nodes`) and the chain of each edge.
    let mut total = g.nodes;
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(g.edges.len());
    let mut segments: Vec<(usize, usize)> = Vec::new();
    for (from, to, _) in &g.edges {
        let mut chain = vec![*from];
        if layer[*to] > layer[*from] {
            for l in layer[*from] + 1..layer[*to] {
                layer.push(l);
                chain.push(total);
                total += 1;
            }
        }
        chain.push(*to);
        if layer[*to] > layer[*from] {
            segments.extend(chain.windows(2).map(|w| (w[0], w[1])));
        }
        chains.push(chain);
    }
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (node, &l) in layer.iter().enumerate() {
        rows[l].push(node);
    }
    order(total, &segments, &layer, &mut rows);
    let width_of = |n: usize| if n < g.nodes { NODE_W } else { DUMMY_W };
    let gap = |a: usize, b: usize| if a < g.nodes && b < g.nodes { H_GAP } else { H_GAP / 2.0 };
    let row_width = |row: &[usize]| {
        row.iter().map(|&n| width_of(n)).sum::<f64>() + row.windows(2).map(|w| gap(w[0], w[1])).sum::<f64>()
    };
    let widest = rows.iter().map(|r| row_width(r)).fold(0.0, f64::max);
    let width = (2.0 * MARGIN + widest).max(NODE_W + 2.0 * MARGIN);
    let height = 2.0 * MARGIN + depth as f64 * NODE_H + (depth as f64 - 1.0).max(0.0) * V_GAP;
    // Left edge of every node and placeholder; each row centred.
    let mut x = vec![0.0; total];
    for row in &rows {
        let mut at = (width - row_width(row)) / 2.0;
        for (i, &n) in row.iter().enumerate() {
            if i > 0 {
                at += gap(row[i - 1], n);
            }
            x[n] = round(at);
            at += width_of(n);
        }
    }
    let top = |n: usize| round(MARGIN + layer[n] as f64 * (NODE_H + V_GAP));
    let nodes = (0..g.nodes).map(|n| (x[n], top(n))).collect();
    // Edges between the same two nodes (a branch beside the main output)
    // leave and arrive side by side.
    let mut twins: std::collections::BTreeMap<(usize, usize), (usize, usize)> = Default::default();
    for (from, to, _) in &g.edges {
        twins.entry((*from, *to)).or_default().1 += 1;
    }
    let edges = g
        .edges
        .iter()
        .zip(&chains)
        .map(|((from, to, branch), chain)| {
            let twin = twins.entry((*from, *to)).or_default();
            let shift = (twin.0 as f64 - (twin.1 as f64 - 1.0) / 2.0) * 14.0;
            twin.0 += 1;
            let back = layer[*to] <= layer[*from];
            let start = (round(x[*from] + NODE_W / 2.0 + shift), round(top(*from) + NODE_H));
            let end = (round(x[*to] + NODE_W / 2.0 + shift), top(*to));
            let mut d = format!("M{} {}", start.0, start.1);
            let label_at;
            if back {
                let side = round(x[*from].max(x[*to]) + NODE_W + H_GAP / 2.0);
                d += &format!(
                    " C{side} {} {side} {} {} {}",
                    round(start.1 + V_GAP),
                    round(end.1 - V_GAP),
                    end.0,
                    end.1
                );
                label_at = (side, round((start.1 + end.1) / 2.0));
            } else {
                // Through each placeholder: in at its top, out at its bottom.
                let mut points: Vec<(f64, f64, f64)> = chain[1..chain.len() - 1]
                    .iter()
                    .map(|&p| (round(x[p] + DUMMY_W / 2.0), top(p), round(top(p) + NODE_H)))
                    .collect();
                points.push((end.0, end.1, end.1));
                let mut prev = start;
                for (px, in_y, out_y) in points {
                    let bend = round((in_y - prev.1) / 2.0);
                    d += &format!(
                        " C{} {} {px} {} {px} {in_y}",
                        prev.0,
                        round(prev.1 + bend),
                        round(in_y - bend)
                    );
                    if out_y > in_y {
                        d += &format!(" L{px} {out_y}");
                    }
                    prev = (px, out_y);
                }
                let first = chain.get(1).map_or(end.0, |&n| {
                    if n < g.nodes {
                        end.0
                    } else {
                        round(x[n] + DUMMY_W / 2.0)
                    }
                });
                label_at = (round((start.0 + first) / 2.0), round(start.1 + V_GAP / 2.0));
            }
            EdgePath {
                from: *from,
                to: *to,
                d,
                branch: branch.clone(),
                label_at,
                back,
            }
        })
        .collect();
    Layout {
        width: round(width),
        height: round(height.max(NODE_H + 2.0 * MARGIN)),
        nodes,
        edges,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Each node's layer: the longest path to it from a node with no incoming
/// edge. Nodes on a cycle (a broken story) follow in the story's order.
fn layers(g: &Graph) -> Vec<usize> {
    let mut incoming = vec![0usize; g.nodes];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); g.nodes];
    for (from, to, _) in &g.edges {
        if from != to {
            incoming[*to] += 1;
            out[*from].push(*to);
        }
    }
    let mut layer = vec![0usize; g.nodes];
    let mut placed = vec![false; g.nodes];
    // Kahn's order, smallest index first: deterministic.
    let mut ready: std::collections::BTreeSet<usize> = (0..g.nodes).filter(|&n| incoming[n] == 0).collect();
    loop {
        while let Some(n) = ready.pop_first() {
            placed[n] = true;
            for &m in &out[n] {
                // An edge into a placed node closes a cycle: drawn going up.
                if placed[m] || incoming[m] == 0 {
                    continue;
                }
                layer[m] = layer[m].max(layer[n] + 1);
                incoming[m] -= 1;
                if incoming[m] == 0 {
                    ready.insert(m);
                }
            }
        }
        // A cycle: free its first node and go on.
        match (0..g.nodes).find(|&n| !placed[n]) {
            Some(n) => {
                incoming[n] = 0;
                ready.insert(n);
            }
            None => break,
        }
    }
    layer
}

/// Orders each row by the barycentre of its neighbours in the row above
/// (sweeping down) and below (sweeping up); a node without neighbours
/// there keeps its place. `segments` link adjacent layers only.
fn order(total: usize, segments: &[(usize, usize)], layer: &[usize], rows: &mut [Vec<usize>]) {
    let mut pos = vec![0.0f64; total];
    for row in rows.iter() {
        for (i, &n) in row.iter().enumerate() {
            pos[n] = i as f64;
        }
    }
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); total];
    for &(a, b) in segments {
        if layer[b] == layer[a] + 1 {
            down[a].push(b);
            up[b].push(a);
        }
    }
    for _ in 0..SWEEPS {
        for downwards in [true, false] {
            let range: Vec<usize> = if downwards {
                (1..rows.len()).collect()
            } else {
                (0..rows.len().saturating_sub(1)).rev().collect()
            };
            for l in range {
                let mut keyed: Vec<(f64, f64, usize)> = rows[l]
                    .iter()
                    .map(|&n| {
                        let linked = if downwards { &up[n] } else { &down[n] };
                        let bary = if linked.is_empty() {
                            pos[n]
                        } else {
                            linked.iter().map(|&m| pos[m]).sum::<f64>() / linked.len() as f64
                        };
                        (bary, pos[n], n)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
                rows[l] = keyed.into_iter().map(|(_, _, n)| n).collect();
                for (i, &n) in rows[l].iter().enumerate() {
                    pos[n] = i as f64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(nodes: usize, edges: &[(usize, usize)]) -> Graph {
        Graph {
            nodes,
            edges: edges.iter().map(|&(a, b)| (a, b, None)).collect(),
        }
    }

    #[test]
    fn a_chain_is_one_column() {
        let l = layout(&graph(3, &[(0, 1), (1, 2)]));
        assert_eq!(l.nodes[0].0, l.nodes[1].0);
        assert_eq!(l.nodes[1].0, l.nodes[2].0);
        assert!(l.nodes[0].1 < l.nodes[1].1 && l.nodes[1].1 < l.nodes[2].1);
        assert!(l.edges.iter().all(|e| !e.back));
    }

    #[test]
    fn a_node_sits_below_its_longest_path() {
        // 0 → 1 → 2, and 0 → 2 directly: 2 is on the third layer.
        let l = layout(&graph(3, &[(0, 1), (1, 2), (0, 2)]));
        assert!(l.nodes[2].1 > l.nodes[1].1);
    }

    #[test]
    fn barycentres_uncross_two_chains() {
        // Two chains whose second layer comes in crossed order.
        let l = layout(&graph(6, &[(0, 3), (1, 2), (2, 5), (3, 4)]));
        // 0 left of 1 ⇒ 3 left of 2 ⇒ 4 left of 5.
        assert!(l.nodes[0].0 < l.nodes[1].0);
        assert!(l.nodes[3].0 < l.nodes[2].0);
        assert!(l.nodes[4].0 < l.nodes[5].0);
    }

    #[test]
    fn a_cycle_is_laid_out_with_a_back_edge() {
        let l = layout(&graph(2, &[(0, 1), (1, 0)]));
        assert_eq!(l.edges.iter().filter(|e| e.back).count(), 1);
    }

    #[test]
    fn the_same_graph_gives_the_same_layout() {
        let g = graph(7, &[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (3, 5), (5, 6)]);
        assert_eq!(layout(&g), layout(&g));
    }

    #[test]
    fn a_long_edge_goes_around_the_box_between() {
        // 0 → 1 → 2 and 0 → 2: the direct edge passes layer 1 beside box 1.
        let l = layout(&graph(3, &[(0, 1), (1, 2), (0, 2)]));
        let direct = &l.edges[2];
        let beside = direct
            .d
            .replace(['M', 'C', 'L'], " ")
            .split_whitespace()
            .filter_map(|v| v.parse::<f64>().ok())
            .collect::<Vec<_>>();
        let (bx, by) = l.nodes[1];
        // Some point of the path is level with box 1 and outside it.
        assert!(
            beside
                .chunks(2)
                .any(|p| p.len() == 2 && p[1] >= by && p[1] <= by + NODE_H && (p[0] < bx || p[0] > bx + NODE_W)),
            "{}",
            direct.d
        );
    }

    #[test]
    fn twin_edges_leave_side_by_side() {
        let g = Graph {
            nodes: 2,
            edges: vec![(0, 1, None), (0, 1, Some("no_match".into()))],
        };
        let l = layout(&g);
        assert_ne!(l.edges[0].d, l.edges[1].d);
    }

    #[test]
    fn an_empty_story_has_a_canvas() {
        let l = layout(&graph(0, &[]));
        assert!(l.width > 0.0 && l.height > 0.0 && l.nodes.is_empty());
    }
}
