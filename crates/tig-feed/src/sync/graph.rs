//! The branches of one feed as a text graph (newest first, like
//! `git log --graph`, fork points marked) or as Graphviz DOT.
//!
//! A feed's history is a tree (every message has at most one parent), so the
//! text layout only ever splits columns at fork points, never merges them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use git2::{Oid, Repository, Sort};

use super::SyncError;
use super::util;
use crate::FeedId;

/// A commit of the feed, as laid out.
struct Node {
    id: Oid,
    parent: Option<Oid>,
    sequence: u64,
    summary: String,
}

struct Layout {
    /// Children before parents.
    nodes: Vec<Node>,
    labels: HashMap<Oid, Vec<String>>,
    children: HashMap<Oid, usize>,
}

fn short_ref(name: &str, feed: &str) -> String {
    if name == format!("refs/heads/{feed}") {
        "local".to_string()
    } else if let Some(rest) = name.strip_prefix("refs/remotes/") {
        rest.strip_suffix(&format!("/{feed}"))
            .unwrap_or(rest)
            .to_string()
    } else {
        name.to_string()
    }
}

fn layout(repo: &Repository, id: &FeedId) -> Result<Layout, SyncError> {
    let feed = id.as_str();
    let tips = util::feed_tips(repo, feed)?;
    if tips.is_empty() {
        return Err(SyncError::FeedNotFound(id.clone()));
    }
    let mut labels: HashMap<Oid, Vec<String>> = HashMap::new();
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL)?;
    let mut pushed = HashSet::new();
    for (name, oid) in &tips {
        labels.entry(*oid).or_default().push(short_ref(name, feed));
        if pushed.insert(*oid) {
            walk.push(*oid)?;
        }
    }
    let mut nodes = Vec::new();
    let mut children: HashMap<Oid, usize> = HashMap::new();
    for oid in walk {
        let oid = oid?;
        let c = repo.find_commit(oid)?;
        let parent = c.parent_id(0).ok();
        if let Some(p) = parent {
            *children.entry(p).or_default() += 1;
        }
        nodes.push(Node {
            id: oid,
            parent,
            sequence: 0,
            summary: util::summary(&String::from_utf8_lossy(c.message_raw_bytes()), 60),
        });
    }
    // sequence numbers, parents first
    let mut seq: HashMap<Oid, u64> = HashMap::with_capacity(nodes.len());
    for n in nodes.iter_mut().rev() {
        let s = n.parent.and_then(|p| seq.get(&p).copied()).unwrap_or(0) + 1;
        seq.insert(n.id, s);
        n.sequence = s;
    }
    Ok(Layout {
        nodes,
        labels,
        children,
    })
}

/// The feed's branches as text, newest first. Unless `full`, long runs of
/// plain messages on a single branch are shortened to a `:` line.
pub fn graph_text(repo: &Repository, feed: &FeedId, full: bool) -> Result<String, SyncError> {
    let l = layout(repo, feed)?;
    let mut out = String::new();
    let mut columns: Vec<Oid> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, out: &mut String| {
        if !full && run.len() > 6 {
            for line in &run[..3] {
                out.push_str(line);
            }
            let _ = writeln!(out, ":   … {} more messages …", run.len() - 5);
            for line in &run[run.len() - 2..] {
                out.push_str(line);
            }
        } else {
            for line in run.iter() {
                out.push_str(line);
            }
        }
        run.clear();
    };
    for n in &l.nodes {
        let waiting: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == n.id)
            .map(|(i, _)| i)
            .collect();
        // Branches meeting at a fork point join before it is drawn.
        let mut col = waiting.first().copied();
        if waiting.len() > 1 {
            flush(&mut run, &mut out);
            let extra: HashSet<usize> = waiting[1..].iter().copied().collect();
            let mut join: Vec<char> = vec![' '; columns.len() * 2];
            for i in 0..columns.len() {
                if extra.contains(&i) {
                    join[2 * i - 1] = '/';
                } else {
                    join[2 * i] = '|';
                }
            }
            let join: String = join.into_iter().collect();
            let _ = writeln!(out, "{}", join.trim_end());
            let mut i = columns.len();
            while i > 0 {
                i -= 1;
                if extra.contains(&i) {
                    columns.remove(i);
                }
            }
            col = columns.iter().position(|c| *c == n.id);
        }
        let col = match col {
            Some(c) => c,
            None => {
                columns.push(n.id);
                columns.len() - 1
            }
        };
        let forks = l.children.get(&n.id).copied().unwrap_or(0);
        let mut line = String::new();
        for i in 0..columns.len() {
            line.push(if i == col { '*' } else { '|' });
            line.push(' ');
        }
        let _ = write!(line, "{} #{}", &n.id.to_string()[..10], n.sequence);
        if let Some(labels) = l.labels.get(&n.id) {
            let _ = write!(line, " ({})", labels.join(", "));
        }
        if forks > 1 {
            let _ = write!(line, " [fork point: {forks} successors]");
        }
        let _ = writeln!(line, " {}", n.summary);
        let plain = columns.len() == 1
            && waiting.len() <= 1
            && forks <= 1
            && n.parent.is_some()
            && !l.labels.contains_key(&n.id)
            && n.parent
                .is_some_and(|p| l.children.get(&p).copied().unwrap_or(0) <= 1);
        if plain {
            run.push(line);
        } else {
            flush(&mut run, &mut out);
            out.push_str(&line);
        }
        match n.parent {
            Some(p) => columns[col] = p,
            None => {
                columns.remove(col);
            }
        }
    }
    flush(&mut run, &mut out);
    Ok(out)
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The feed's branches as a Graphviz digraph: one node per message (fork
/// points in red), an edge from each message to its parent, one box per ref.
pub fn graph_dot(repo: &Repository, feed: &FeedId) -> Result<String, SyncError> {
    let l = layout(repo, feed)?;
    let feed = feed.as_str();
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"feed {}\" {{", &feed[..feed.len().min(16)]);
    let _ = writeln!(out, "  rankdir=RL;");
    let _ = writeln!(out, "  node [shape=box, fontname=monospace];");
    for n in &l.nodes {
        let forks = l.children.get(&n.id).copied().unwrap_or(0);
        let style = if forks > 1 {
            ", color=red, penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"#{} {}\\n{}\"{style}];",
            n.id,
            n.sequence,
            &n.id.to_string()[..10],
            dot_escape(&n.summary)
        );
        if let Some(p) = n.parent {
            let _ = writeln!(out, "  \"{}\" -> \"{p}\";", n.id);
        }
    }
    let mut labels: Vec<(&Oid, &Vec<String>)> = l.labels.iter().collect();
    labels.sort();
    for (oid, names) in labels {
        for name in names {
            let _ = writeln!(
                out,
                "  \"ref:{}\" [label=\"{}\", shape=ellipse];\n  \"ref:{}\" -> \"{oid}\" [style=dashed];",
                dot_escape(name),
                dot_escape(name),
                dot_escape(name)
            );
        }
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}
