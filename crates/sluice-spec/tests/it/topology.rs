//! Topological order and cycle detection on generated pipelines.

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

/// A pipeline of `n` SQL steps over one source, step `i` reading the steps in `deps[i]` (all
/// with a smaller index, so the graph is acyclic), declared in the order `order`.
fn spec(deps: &[Vec<usize>], order: &[usize]) -> String {
    let mut s = String::from("name: gen\nsources:\n  src: {path: Cargo.toml, format: csv}\nsteps:\n");
    for &i in order {
        let inputs: Vec<String> =
            if deps[i].is_empty() { vec!["src".into()] } else { deps[i].iter().map(|d| format!("s{d}")).collect() };
        s.push_str(&format!("  s{i}: {{kind: sql, inputs: [{}], query: 'SELECT 1'}}\n", inputs.join(", ")));
    }
    s
}

fn dag() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<usize>)> {
    (2usize..12)
        .prop_flat_map(|n| {
            let deps = (0..n)
                .map(|i| {
                    proptest::collection::vec(0..i.max(1), 0..3.min(i + 1))
                        .prop_map(move |v| if i == 0 { vec![] } else { v })
                })
                .collect::<Vec<_>>();
            (deps, Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
        .prop_map(|(mut deps, order)| {
            for d in &mut deps {
                d.sort();
                d.dedup();
            }
            (deps, order)
        })
}

fn base() -> PathBuf {
    // Read at run time: a test binary reused from another checkout must not point back at it.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

proptest! {
    /// Whatever order steps are declared in, every step comes after everything it reads.
    #[test]
    fn order_respects_dependencies((deps, order) in dag()) {
        let p = sluice_spec::parse(&spec(&deps, &order), "gen.yaml", &base(), &[]).unwrap();
        let position: HashMap<&str, usize> = p.steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        prop_assert_eq!(p.steps.len(), deps.len() + 1);
        for s in &p.steps {
            for up in s.upstream() {
                prop_assert!(position[up] < position[s.name.as_str()], "{} before {}", up, s.name);
            }
        }
    }

    /// Closing any path back on itself is reported as a cycle naming the steps on it.
    #[test]
    fn back_edges_are_cycles((deps, order) in dag(), pick in any::<prop::sample::Index>()) {
        let mut deps = deps;
        let n = deps.len();
        let from = pick.index(n - 1) + 1;
        // s0 reads s{from}: since s{from} (transitively) may not read s0, force it to.
        if !deps[from].contains(&0) {
            deps[from].push(0);
        }
        deps[0] = vec![from];
        let e = sluice_spec::parse(&spec(&deps, &order), "gen.yaml", &base(), &[]).unwrap_err().to_string();
        prop_assert!(e.contains("cycle") && e.contains("s0") && e.contains(&format!("s{from}")), "{}", e);
    }
}
