use std::path::Path;
use std::process::ExitCode;

use sluice_core::ContentHash;
use sluice_store::{ModelSelector, Provenance};

use super::existing_workspace;
use crate::output::{json, short};

#[derive(clap::Args)]
pub struct Args {
    /// An artifact hash (or unique prefix), or a model as `NAME`, `NAME@ALIAS`, `NAME:VERSION`.
    pub reference: String,
    /// How many levels of inputs to follow.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    #[arg(long)]
    pub json: bool,
}

fn is_hash_prefix(s: &str) -> bool {
    s.len() >= 4 && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub fn run(home: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let ws = existing_workspace(home)?;
    let (name, selector) = ModelSelector::parse(&args.reference);
    let model = ws.meta.resolve_model(&name, &selector);
    // A registered model name wins; otherwise a hex string is an artifact hash prefix.
    let root: ContentHash = if model.is_err() && is_hash_prefix(&args.reference) {
        ws.meta.get_artifact(&args.reference)?.hash
    } else {
        let v = model?;
        println!(
            "model {name}:{} (aliases: {})",
            v.version,
            if v.aliases.is_empty() { "none".into() } else { v.aliases.join(", ") }
        );
        v.artifact
    };
    // Walk the graph upstream, depth first, each artifact once.
    let mut chain: Vec<(usize, Provenance)> = Vec::new();
    let mut queue = vec![(0usize, root)];
    let mut seen = std::collections::HashSet::new();
    while let Some((depth, hash)) = queue.pop() {
        if !seen.insert(hash) || depth > args.depth {
            continue;
        }
        let p = ws.meta.provenance(&hash)?;
        if let Some(step) = &p.produced_by {
            for i in step.inputs.iter().rev() {
                if !i.name.starts_with("file:") {
                    queue.push((depth + 1, i.hash));
                }
            }
        }
        chain.push((depth, p));
    }
    if args.json {
        return json(&chain.iter().map(|(d, p)| serde_json::json!({"depth": d, "provenance": p})).collect::<Vec<_>>())
            .map(|_| ExitCode::SUCCESS);
    }
    for (depth, p) in chain {
        let pad = "  ".repeat(depth);
        let a = &p.artifact;
        let rows = a.rows.map(|r| format!(", {r} rows")).unwrap_or_default();
        println!("{pad}{} {} ({} bytes{rows})", a.kind.as_str(), short(&a.hash.to_string()), a.size);
        match &p.produced_by {
            Some(s) => {
                println!(
                    "{pad}  produced by step `{}` ({}) output `{}` of pipeline `{}`, run {}",
                    s.step,
                    s.kind,
                    p.output.as_deref().unwrap_or("?"),
                    p.pipeline.as_deref().unwrap_or("?"),
                    s.run_id
                );
                println!("{pad}  config {}", s.config);
                for i in &s.inputs {
                    println!("{pad}  input {} = {}", i.name, short(&i.hash.to_string()));
                }
            }
            None => println!("{pad}  (no recorded producer)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
