//! The rewriter's held-out benchmark (issue 20): hand-labelled candidate rewrites from
//! `tests/rewrite_held_out/cases.sql`, written without looking at the verifier's generators,
//! each put through the checks that need no model and no timing (V0–V2, the proof, V3).
//!
//! A wrong candidate must never be proven; the test also keeps the count of proven equivalent
//! ones from falling. `cargo test --test integration rewrite_held_out -- --nocapture` prints
//! the table that docs/benchmarks.md reports.

use std::collections::HashMap;

use datafusion::prelude::SessionContext;
use semsql::rewrite::prove::{prove, Proof};
use semsql::rewrite::results::ResultCheck;
use semsql::rewrite::verify::{static_checks, Verdict};

struct Case {
    name: String,
    equivalent: bool,
    original: String,
    candidate: String,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../rewrite_held_out/cases.sql");
    let mut cases = Vec::new();
    for block in text.split("\n-- case: ").skip(1) {
        let name = block.lines().next().unwrap_or("").trim().to_owned();
        let field = |label: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(label))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("case {name} has no {label}"))
        };
        let label = field("-- label: ");
        assert!(
            !field("-- reason: ").is_empty(),
            "case {name} has no reason"
        );
        let after = |marker: &str| {
            let at = block
                .find(marker)
                .unwrap_or_else(|| panic!("{name}: {marker}"));
            block[at + marker.len()..]
                .lines()
                .skip(1)
                .take_while(|line| !line.starts_with("-- "))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        };
        cases.push(Case {
            equivalent: match label.as_str() {
                "equivalent" => true,
                "wrong" => false,
                other => panic!("case {name}: label {other}"),
            },
            original: after("-- original:"),
            candidate: after("-- candidate:"),
            name,
        });
    }
    cases
}

async fn database() -> SessionContext {
    let ctx = SessionContext::new();
    for sql in [
        "CREATE TABLE nation (n_nationkey INT NOT NULL, n_name TEXT, n_regionkey INT)",
        "INSERT INTO nation SELECT v, 'NATION' || v, v % 5 FROM generate_series(0, 24) AS t(v)",
        "CREATE TABLE customer (c_custkey INT NOT NULL, c_name TEXT, c_nationkey INT, \
         c_acctbal DOUBLE, c_mktsegment TEXT)",
        "INSERT INTO customer SELECT v, 'Customer#' || v, v % 25, \
         CASE WHEN v % 41 = 0 THEN NULL ELSE (v * 37 % 1000) - 100.0 END, \
         CASE WHEN v % 5 = 0 THEN 'BUILDING' ELSE 'MACHINERY' END \
         FROM generate_series(1, 150) AS t(v)",
        "CREATE TABLE orders (o_orderkey INT NOT NULL, o_custkey INT, o_orderstatus TEXT, \
         o_totalprice DOUBLE, o_orderdate DATE, o_orderpriority TEXT)",
        "INSERT INTO orders SELECT v, CASE WHEN v % 97 = 0 THEN NULL ELSE v % 140 + 1 END, \
         CASE WHEN v % 3 = 0 THEN 'F' WHEN v % 3 = 1 THEN 'O' ELSE 'P' END, \
         CASE WHEN v % 113 = 0 THEN NULL ELSE (v * 7919 % 5000) * 1.0 END, \
         DATE '1993-01-01' + CAST(v % 1000 AS INT), \
         CASE WHEN v % 5 = 0 THEN '1-URGENT' WHEN v % 5 = 1 THEN '2-HIGH' ELSE '3-MEDIUM' END \
         FROM generate_series(1, 1500) AS t(v)",
        "CREATE TABLE lineitem (l_orderkey INT, l_linenumber INT, l_partkey INT, \
         l_quantity DOUBLE, l_extendedprice DOUBLE, l_discount DOUBLE, l_returnflag TEXT, \
         l_shipdate DATE)",
        "INSERT INTO lineitem SELECT v % 1400 + 1, v % 4, v % 200 + 1, \
         CASE WHEN v % 211 = 0 THEN NULL ELSE (v * 13 % 50) + 1.0 END, \
         (v * 31 % 900) + 100.0, (v % 10) / 100.0, \
         CASE WHEN v % 3 = 0 THEN 'R' ELSE 'N' END, DATE '1993-02-01' + CAST(v % 1100 AS INT) \
         FROM generate_series(1, 6000) AS t(v)",
        "CREATE TABLE part (p_partkey INT NOT NULL, p_name TEXT, p_brand TEXT, p_size INT, \
         p_retailprice DOUBLE)",
        "INSERT INTO part SELECT v, 'part ' || v, 'Brand#' || (v % 5 + 21), v % 50, \
         900.0 + v FROM generate_series(1, 200) AS t(v)",
    ] {
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
    }
    ctx
}

/// One case's verdict, as the rewriter would give it without timing: `proven`, `tested`,
/// `untested`, `no-op` or `rejected`, and the check's words.
async fn judge(
    ctx: &SessionContext,
    checks: &mut HashMap<String, ResultCheck>,
    case: &Case,
) -> (&'static str, String) {
    let static_verdicts = static_checks(ctx, &case.original, &case.candidate).await;
    if let Some((name, verdict)) = static_verdicts
        .verdicts
        .iter()
        .find(|(_, v)| *v != Verdict::Pass)
    {
        let kind = if *name == "V2 no-op" {
            "no-op"
        } else {
            "rejected"
        };
        return (kind, format!("{name}: {verdict:?}"));
    }
    let proof = prove(ctx, &case.original, &case.candidate).await;
    if !checks.contains_key(&case.original) {
        let check = ResultCheck::prepare(ctx, &case.original, 0x5e75_9117)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        checks.insert(case.original.clone(), check);
    }
    let v3 = checks[&case.original].verdict(&case.candidate).await;
    match (v3, proof) {
        (Verdict::Fail(why), _) => ("rejected", why),
        (_, Proof::Equivalent) => ("proven", String::new()),
        (Verdict::Pass, Proof::Unproven(why)) => ("tested", why),
        (Verdict::Untested(why), Proof::Unproven(_)) => ("untested", why),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_held_out_benchmark() {
    let ctx = database().await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut checks = HashMap::new();
    let mut counts: HashMap<(bool, &'static str), usize> = HashMap::new();
    let mut counterexamples = 0;
    let mut refuted_equivalents = Vec::new();
    println!("| case | label | verdict | why |\n|---|---|---|---|");
    for case in &cases {
        let (verdict, why) = judge(&ctx, &mut checks, case).await;
        *counts.entry((case.equivalent, verdict)).or_default() += 1;
        if !case.equivalent && why.starts_with("differs on: ") {
            counterexamples += 1;
        }
        // A test database on which an equivalent candidate "differs" is a bug of the check.
        if case.equivalent && verdict == "rejected" && !why.starts_with("V") {
            refuted_equivalents.push(case.name.clone());
        }
        let label = if case.equivalent {
            "equivalent"
        } else {
            "wrong"
        };
        let why: String = why.chars().take(160).collect();
        println!(
            "| {} | {label} | {verdict} | {} |",
            case.name,
            why.replace('|', "/")
        );
    }
    let count = |equivalent: bool, verdict: &str| {
        counts
            .iter()
            .filter(|((e, v), _)| *e == equivalent && *v == verdict)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    let equivalents = cases.iter().filter(|c| c.equivalent).count();
    let wrongs = cases.len() - equivalents;
    println!(
        "\n{equivalents} equivalent candidates: {} proven, {} tested, {} untested, {} no-op, \
         {} rejected (false rejects)",
        count(true, "proven"),
        count(true, "tested"),
        count(true, "untested"),
        count(true, "no-op"),
        count(true, "rejected"),
    );
    println!(
        "{wrongs} wrong candidates: {} proven (false accepts), {} tested (false accepts of the \
         tests), {} untested, {} rejected ({counterexamples} with a small counterexample)",
        count(false, "proven"),
        count(false, "tested"),
        count(false, "untested"),
        count(false, "rejected") + count(false, "no-op"),
    );
    assert_eq!(count(false, "proven"), 0, "a wrong candidate was proven");
    assert_eq!(
        count(true, "rejected"),
        0,
        "an equivalent candidate was refuted"
    );
    assert!(
        count(true, "proven") >= 12,
        "fewer equivalent candidates proven than before"
    );
}
