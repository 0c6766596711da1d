//! Terminal output helpers: errors with their causes and hints, tables, JSON.

use std::io::IsTerminal;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

/// A hint the user can act on, printed after the error.
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

pub fn print_error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    let mut hint = None;
    for cause in e.chain().skip(1) {
        if let Some(h) = cause.downcast_ref::<Hint>() {
            hint = Some(h.0.clone());
            continue;
        }
        let text = cause.to_string();
        if !e.to_string().contains(&text) {
            eprintln!("  caused by: {text}");
        }
    }
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t
}

pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms}ms") } else { format!("{:.1}s", ms as f64 / 1000.0) }
}
