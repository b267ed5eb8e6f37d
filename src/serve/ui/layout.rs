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

/// Lays out `g`.
pub(crate) fn layout(g: &Graph) -> Layout {
    let layer = layers(g);
    let depth = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (node, &l) in layer.iter().enumerate() {
        rows[l].push(node);
    }
    order(g, &layer, &mut rows);
    let widest = rows.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let width = 2.0 * MARGIN + widest * NODE_W + (widest - 1.0).max(0.0) * H_GAP;
    let height = 2.0 * MARGIN + depth as f64 * NODE_H + (depth as f64 - 1.0).max(0.0) * V_GAP;
    let mut nodes = vec![(0.0, 0.0); g.nodes];
    for (l, row) in rows.iter().enumerate() {
        // Each row centred.
        let row_w = row.len() as f64 * NODE_W + (row.len() as f64 - 1.0).max(0.0) * H_GAP;
        let left = (width - row_w) / 2.0;
        for (i, &node) in row.iter().enumerate() {
            nodes[node] = (
                round(left + i as f64 * (NODE_W + H_GAP)),
                round(MARGIN + l as f64 * (NODE_H + V_GAP)),
            );
        }
    }
    let edges = g
        .edges
        .iter()
        .map(|(from, to, branch)| {
            let (fx, fy) = nodes[*from];
            let (tx, ty) = nodes[*to];
            let start = (round(fx + NODE_W / 2.0), round(fy + NODE_H));
            let end = (round(tx + NODE_W / 2.0), ty);
            let bend = round(((end.1 - start.1).abs() / 2.0).max(V_GAP / 2.0));
            let back = layer[*to] <= layer[*from];
            let (c1, c2) = if back {
                ((start.0 + NODE_W / 2.0 + H_GAP, start.1 + bend), (end.0 + NODE_W / 2.0 + H_GAP, end.1 - bend))
            } else {
                ((start.0, start.1 + bend), (end.0, end.1 - bend))
            };
            EdgePath {
                from: *from,
                to: *to,
                d: format!(
                    "M{} {} C{} {} {} {} {} {}",
                    start.0,
                    start.1,
                    round(c1.0),
                    round(c1.1),
                    round(c2.0),
                    round(c2.1),
                    end.0,
                    end.1
                ),
                branch: branch.clone(),
                label_at: (round((start.0 + end.0) / 2.0), round((start.1 + end.1) / 2.0)),
                back,
            }
        })
        .collect();
    Layout {
        width: round(width.max(NODE_W + 2.0 * MARGIN)),
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
/// there keeps its place.
fn order(g: &Graph, layer: &[usize], rows: &mut [Vec<usize>]) {
    let mut pos = vec![0.0f64; g.nodes];
    let set_pos = |rows: &[Vec<usize>], pos: &mut [f64]| {
        for row in rows {
            for (i, &n) in row.iter().enumerate() {
                pos[n] = i as f64;
            }
        }
    };
    set_pos(rows, &mut pos);
    for _ in 0..SWEEPS {
        for downwards in [true, false] {
            let range: Vec<usize> = if downwards {
                (1..rows.len()).collect()
            } else {
                (0..rows.len().saturating_sub(1)).rev().collect()
            };
            for l in range {
                let neighbour = if downwards { l - 1 } else { l + 1 };
                let mut keyed: Vec<(f64, f64, usize)> = rows[l]
                    .iter()
                    .map(|&n| {
                        let linked: Vec<f64> = g
                            .edges
                            .iter()
                            .filter_map(|(from, to, _)| {
                                if downwards && *to == n && layer[*from] == neighbour {
                                    Some(pos[*from])
                                } else if !downwards && *from == n && layer[*to] == neighbour {
                                    Some(pos[*to])
                                } else {
                                    None
                                }
                            })
                            .collect();
                        let bary = if linked.is_empty() {
                            pos[n]
                        } else {
                            linked.iter().sum::<f64>() / linked.len() as f64
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
    fn an_empty_story_has_a_canvas() {
        let l = layout(&graph(0, &[]));
        assert!(l.width > 0.0 && l.height > 0.0 && l.nodes.is_empty());
    }
}
