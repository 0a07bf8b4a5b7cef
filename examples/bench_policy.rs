//! Compile + diff timing for a 1,000-node namespace under a 100-rule policy (plus 10 ssh rules).
//!
//! `cargo run --release --example bench_policy`. Target: compile for all nodes and diff
//! against the previous result in under 50 ms.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tenscale::policy::{compile_namespace, diff, Policy, PolicyNode};

const NODES: i64 = 1000;
const TAGS: usize = 40;

fn nodes(count: i64) -> Vec<PolicyNode> {
    (1..=count)
        .map(|id| {
            // 30% tagged with one or two tags, the rest belong to the namespace's user.
            let tags = if id % 10 < 3 {
                let t = id as usize % TAGS;
                let mut v = vec![format!("tag:t{t}")];
                if id % 7 == 0 {
                    v.push(format!("tag:t{}", (t + 1) % TAGS));
                }
                v
            } else {
                Vec::new()
            };
            let user = tags.is_empty().then(|| "acme-ns@acme".to_owned());
            let v4: IpAddr = format!("100.64.{}.{}", id / 256, id % 256).parse().unwrap();
            let v6: IpAddr = format!("fd7a:115c:a1e0::{id:x}").parse().unwrap();
            PolicyNode { id: id.into(), addresses: vec![v4, v6], tags, user }
        })
        .collect()
}

fn policy_text(first_port: u16) -> String {
    let tag_owners: Vec<String> = (0..TAGS).map(|t| format!("\"tag:t{t}\": [\"group:admins\"]")).collect();
    let mut acls = Vec::new();
    for r in 0..100usize {
        let (src, dst) = match r % 5 {
            0 => {
                ("\"autogroup:member\"".to_owned(), format!("\"tag:t{}:{},{}\"", r % TAGS, first_port + r as u16, 443))
            }
            1 => (format!("\"tag:t{}\"", r % TAGS), format!("\"tag:t{}:5432\"", (r + 3) % TAGS)),
            2 => ("\"group:admins\"".to_owned(), "\"autogroup:tagged:22\"".to_owned()),
            3 => ("\"*\"".to_owned(), format!("\"tag:t{}:80-90\"", r % TAGS)),
            _ => ("\"autogroup:member\"".to_owned(), "\"autogroup:self:*\"".to_owned()),
        };
        acls.push(format!("{{\"action\": \"accept\", \"src\": [{src}], \"dst\": [{dst}]}}"));
    }
    let ssh: Vec<String> = (0..10)
        .map(|r| {
            format!(
                "{{\"action\": \"check\", \"src\": [\"group:admins\"], \"dst\": [\"tag:t{r}\"], \"users\": [\"root\", \"autogroup:nonroot\"]}}"
            )
        })
        .collect();
    format!(
        "{{\"groups\": {{\"group:admins\": [\"acme-ns@acme\"]}}, \"tagOwners\": {{{}}}, \"acls\": [{}], \"ssh\": [{}]}}",
        tag_owners.join(", "),
        acls.join(",\n"),
        ssh.join(",\n")
    )
}

fn main() {
    println!("machine: {}", tenscale::loadgen::machine::Machine::probe());
    let before = nodes(NODES);
    let mut after = nodes(NODES);
    after.pop(); // one node left...
    after.push(nodes(NODES + 1).pop().unwrap()); // ...and a new one joined
    let old_policy = Policy::parse(&policy_text(8000)).expect("policy");
    let new_policy = Policy::parse(&policy_text(9000)).expect("policy"); // 20 rules' ports moved

    let old = compile_namespace(Some(&old_policy), &before);
    let rounds = 21;
    let mut compile_times = Vec::new();
    let mut total_times = Vec::new();
    let mut changed = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let new = compile_namespace(Some(&new_policy), &after);
        compile_times.push(start.elapsed());
        let ids = diff(&old, &new);
        total_times.push(start.elapsed());
        changed = ids.len();
    }
    compile_times.sort();
    total_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let same = diff(&old, &compile_namespace(Some(&old_policy), &before)).len();
    assert_eq!(same, 0, "recompiling the same input must change nothing");
    let new = compile_namespace(Some(&new_policy), &after);
    let rules: usize = new.nodes.values().map(|n| n.filter.len()).sum();
    let bytes: usize = new.nodes.values().map(|n| serde_json::to_vec(&n.filter).map_or(0, |v| v.len())).sum();
    println!(
        "{NODES} nodes x {} acls + {} ssh rules, {rounds} rounds: compile median {:.2} ms (best {:.2}), \
         compile+diff median {:.2} ms (best {:.2}); {changed} nodes changed, 0 on an identical recompile; \
         {rules} filter rules, {:.1} MB of filter JSON over all nodes",
        new_policy.acls.as_ref().map_or(0, Vec::len),
        new_policy.ssh.as_ref().map_or(0, Vec::len),
        ms(compile_times[rounds / 2]),
        ms(compile_times[0]),
        ms(total_times[rounds / 2]),
        ms(total_times[0]),
        bytes as f64 / 1e6,
    );
}
