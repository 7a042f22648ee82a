//! The query rewriter on TPC-H without a live model (issue 6).
//!
//! TPC-H data is generated at a small scale with the `tpchgen` crate and loaded over the wire
//! into tables declared as the TPC-H schema declares them (every column NOT NULL). Six queries
//! go through `EXPLAIN REWRITE`: TPC-H Q2, Q17, Q20 and Q6, and two TPC-DS-style queries on the
//! same tables (a CTE read twice with a correlated average, as TPC-DS Q1 and Q30 do; a DISTINCT
//! over a join). The fake model server, over real HTTP, answers each prompt of the ensemble with
//! a scripted candidate whose truth is known: a known-good manual rewrite (decorrelated or
//! pre-filtered forms of Q2, Q17 and Q20), a subtly wrong one (a dropped predicate, a changed
//! join type, a lost DISTINCT, a changed aggregate or comparison), broken SQL, a no-op, or a
//! slower equivalent.
//!
//! Reported per query and in total: the candidates the verifier accepted, false accepts (a
//! wrong or broken candidate accepted), the speedup of the chosen rewrite re-measured after the
//! search (5 interleaved pairs, median), regressions (a chosen rewrite slower than the original
//! in that re-measurement), false rejects (a known-good rewrite whose re-measured speedup is at
//! least 1.5× but was not accepted), and the search's overhead (LM requests, tokens, seconds).
//!
//! Run: `cargo bench --bench rewrite` (scale 0.3); `SEMSQL_BENCH_SF=0.01` for a quick run.

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Instant;

use semsql::fake_llm::{Behaviour, FakeLlm, ScriptedAnswer};
use tokio_postgres::{Client, SimpleQueryMessage};

/// What a scripted candidate is known to be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Truth {
    Good,
    Wrong(&'static str),
    Broken,
    NoOp,
    Slower,
}

struct Case {
    name: &'static str,
    /// A text only this query contains, for the fake model's script.
    marker: &'static str,
    sql: &'static str,
    /// One candidate per prompt of the ensemble, in its order.
    candidates: [(Truth, &'static str); 4],
}

const PROMPT_MARKERS: [&str; 4] = [
    "Rewrite SQL queries for better performance.",
    "A rewrite must be semantically equivalent",
    "Work step by step",
    "Apply the rules below",
];

const Q2: &str =
    "select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment \
from part, supplier, partsupp, nation, region \
where p_partkey = ps_partkey and s_suppkey = ps_suppkey and p_size = 15 and p_type like '%BRASS' \
and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = 'EUROPE' \
and ps_supplycost = (select min(ps_supplycost) from partsupp, supplier, nation, region \
where p_partkey = ps_partkey and s_suppkey = ps_suppkey and s_nationkey = n_nationkey \
and n_regionkey = r_regionkey and r_name = 'EUROPE') \
order by s_acctbal desc, n_name, s_name, p_partkey limit 100";

/// Q2 with the minimum cost computed only for the parts the outer query keeps.
const Q2_GOOD: &str = "with europe as (select ps_partkey, ps_supplycost, s_acctbal, s_name, \
s_address, s_phone, s_comment, n_name from partsupp join supplier on s_suppkey = ps_suppkey \
join nation on s_nationkey = n_nationkey join region on n_regionkey = r_regionkey \
where r_name = 'EUROPE'), \
brass as (select p_partkey, p_mfgr from part where p_size = 15 and p_type like '%BRASS'), \
cheapest as (select ps_partkey as cheapest_partkey, min(ps_supplycost) as min_cost \
from europe join brass on ps_partkey = p_partkey group by ps_partkey) \
select e.s_acctbal, e.s_name, e.n_name, b.p_partkey, b.p_mfgr, e.s_address, e.s_phone, e.s_comment \
from europe e join brass b on e.ps_partkey = b.p_partkey \
join cheapest c on c.cheapest_partkey = e.ps_partkey and e.ps_supplycost = c.min_cost \
order by e.s_acctbal desc, e.n_name, e.s_name, b.p_partkey limit 100";

/// The same, without `p_type like '%BRASS'`.
const Q2_DROPPED: &str = "with europe as (select ps_partkey, ps_supplycost, s_acctbal, s_name, \
s_address, s_phone, s_comment, n_name from partsupp join supplier on s_suppkey = ps_suppkey \
join nation on s_nationkey = n_nationkey join region on n_regionkey = r_regionkey \
where r_name = 'EUROPE'), \
brass as (select p_partkey, p_mfgr from part where p_size = 15), \
cheapest as (select ps_partkey as cheapest_partkey, min(ps_supplycost) as min_cost \
from europe join brass on ps_partkey = p_partkey group by ps_partkey) \
select e.s_acctbal, e.s_name, e.n_name, b.p_partkey, b.p_mfgr, e.s_address, e.s_phone, e.s_comment \
from europe e join brass b on e.ps_partkey = b.p_partkey \
join cheapest c on c.cheapest_partkey = e.ps_partkey and e.ps_supplycost = c.min_cost \
order by e.s_acctbal desc, e.n_name, e.s_name, b.p_partkey limit 100";

const Q17: &str = "select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem, part \
where p_partkey = l_partkey and p_brand = 'Brand#23' and p_container = 'MED BOX' \
and l_quantity < (select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)";

/// Q17 with the average computed only for the chosen parts.
const Q17_GOOD: &str = "with parts as (select p_partkey from part \
where p_brand = 'Brand#23' and p_container = 'MED BOX'), \
part_avg as (select l_partkey as avg_partkey, 0.2 * avg(l_quantity) as limit_quantity \
from lineitem join parts on l_partkey = p_partkey group by l_partkey) \
select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem \
join parts on l_partkey = p_partkey join part_avg on l_partkey = avg_partkey \
where l_quantity < limit_quantity";

/// A changed aggregate: max instead of avg.
const Q17_MAX: &str = "with parts as (select p_partkey from part \
where p_brand = 'Brand#23' and p_container = 'MED BOX'), \
part_avg as (select l_partkey as avg_partkey, 0.2 * max(l_quantity) as limit_quantity \
from lineitem join parts on l_partkey = p_partkey group by l_partkey) \
select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem \
join parts on l_partkey = p_partkey join part_avg on l_partkey = avg_partkey \
where l_quantity < limit_quantity";

/// Equivalent, but the average comes from a window over the whole of lineitem.
const Q17_WINDOW: &str = "select sum(l_extendedprice) / 7.0 as avg_yearly from \
(select l_partkey, l_extendedprice, l_quantity, \
avg(l_quantity) over (partition by l_partkey) as part_avg from lineitem) l \
join part on p_partkey = l.l_partkey \
where p_brand = 'Brand#23' and p_container = 'MED BOX' and l_quantity < 0.2 * part_avg";

const Q20: &str = "select s_name, s_address from supplier, nation \
where s_suppkey in (select ps_suppkey from partsupp \
where ps_partkey in (select p_partkey from part where p_name like 'forest%') \
and ps_availqty > (select 0.5 * sum(l_quantity) from lineitem \
where l_partkey = ps_partkey and l_suppkey = ps_suppkey \
and l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01')) \
and s_nationkey = n_nationkey and n_name = 'CANADA' order by s_name";

/// Q20 with the shipped quantities summed only for the forest parts.
const Q20_GOOD: &str = "with forest as (select p_partkey from part where p_name like 'forest%'), \
shipped as (select l_partkey, l_suppkey, 0.5 * sum(l_quantity) as half_quantity from lineitem \
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
and l_partkey in (select p_partkey from forest) group by l_partkey, l_suppkey) \
select s_name, s_address from supplier, nation \
where s_suppkey in (select ps_suppkey from partsupp join shipped \
on l_partkey = ps_partkey and l_suppkey = ps_suppkey \
where ps_partkey in (select p_partkey from forest) and ps_availqty > half_quantity) \
and s_nationkey = n_nationkey and n_name = 'CANADA' order by s_name";

/// A changed join type: the semi join (IN) made an inner join, so a supplier with several
/// qualifying parts comes out several times.
const Q20_JOIN: &str = "with forest as (select p_partkey from part where p_name like 'forest%'), \
shipped as (select l_partkey, l_suppkey, 0.5 * sum(l_quantity) as half_quantity from lineitem \
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
and l_partkey in (select p_partkey from forest) group by l_partkey, l_suppkey) \
select s_name, s_address from supplier join nation on s_nationkey = n_nationkey \
join partsupp on ps_suppkey = s_suppkey join shipped \
on l_partkey = ps_partkey and l_suppkey = ps_suppkey \
where ps_partkey in (select p_partkey from forest) and ps_availqty > half_quantity \
and n_name = 'CANADA' order by s_name";

const DS_RETURNS: &str = "with supplier_revenue as (select l_suppkey as supp, s_nationkey as nation, \
sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem join supplier on l_suppkey = s_suppkey \
where l_shipdate >= date '1995-01-01' and l_shipdate < date '1996-01-01' \
group by l_suppkey, s_nationkey) \
select sr1.supp, sr1.revenue from supplier_revenue sr1 \
where sr1.revenue > (select avg(sr2.revenue) * 1.2 from supplier_revenue sr2 where sr2.nation = sr1.nation) \
order by sr1.supp limit 100";

/// The CTE computed once, the per-nation average by a window.
const DS_RETURNS_GOOD: &str = "with supplier_revenue as (select l_suppkey as supp, s_nationkey as nation, \
sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem join supplier on l_suppkey = s_suppkey \
where l_shipdate >= date '1995-01-01' and l_shipdate < date '1996-01-01' \
group by l_suppkey, s_nationkey), \
with_average as (select supp, revenue, avg(revenue) over (partition by nation) * 1.2 as threshold \
from supplier_revenue) \
select supp, revenue from with_average where revenue > threshold order by supp limit 100";

/// `>=` instead of `>`.
const DS_RETURNS_BOUNDARY: &str = "with supplier_revenue as (select l_suppkey as supp, s_nationkey as nation, \
sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem join supplier on l_suppkey = s_suppkey \
where l_shipdate >= date '1995-01-01' and l_shipdate < date '1996-01-01' \
group by l_suppkey, s_nationkey), \
with_average as (select supp, revenue, avg(revenue) over (partition by nation) * 1.2 as threshold \
from supplier_revenue) \
select supp, revenue from with_average where revenue >= threshold order by supp limit 100";

const DS_BUYERS: &str = "select distinct c_custkey, c_name from customer \
join orders on c_custkey = o_custkey \
where o_orderdate >= date '1995-01-01' and c_acctbal > 5000 order by c_custkey limit 50";

const DS_BUYERS_SEMI: &str = "select distinct c_custkey, c_name from customer \
where c_acctbal > 5000 and exists (select 1 from orders \
where o_custkey = c_custkey and o_orderdate >= date '1995-01-01') order by c_custkey limit 50";

const DS_BUYERS_NO_DISTINCT: &str = "select c_custkey, c_name from customer \
join orders on c_custkey = o_custkey \
where o_orderdate >= date '1995-01-01' and c_acctbal > 5000 order by c_custkey limit 50";

const DS_BUYERS_LEFT: &str = "select distinct c_custkey, c_name from customer \
left join orders on c_custkey = o_custkey and o_orderdate >= date '1995-01-01' \
where c_acctbal > 5000 order by c_custkey limit 50";

const Q6: &str = "select sum(l_extendedprice * l_discount) as revenue from lineitem \
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
and l_discount between 0.05 and 0.07 and l_quantity < 24";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "TPC-H Q2",
            marker: "p_type like '%BRASS'",
            sql: Q2,
            candidates: [
                (Truth::Good, Q2_GOOD),
                (Truth::Wrong("dropped predicate"), Q2_DROPPED),
                (
                    Truth::Broken,
                    "select s_acctbal, s_name from part, supplier where",
                ),
                (Truth::NoOp, Q2),
            ],
        },
        Case {
            name: "TPC-H Q17",
            marker: "'MED BOX'",
            sql: Q17,
            candidates: [
                (Truth::Wrong("changed aggregate"), Q17_MAX),
                (Truth::Good, Q17_GOOD),
                (Truth::Slower, Q17_WINDOW),
                (
                    Truth::Broken,
                    "select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem_part",
                ),
            ],
        },
        Case {
            name: "TPC-H Q20",
            marker: "'forest%'",
            sql: Q20,
            candidates: [
                (Truth::Wrong("changed join type"), Q20_JOIN),
                (Truth::Good, Q20_GOOD),
                (Truth::NoOp, Q20),
                (Truth::Good, Q20_GOOD),
            ],
        },
        Case {
            name: "TPC-DS-style returns (CTE twice)",
            marker: "supplier_revenue sr2",
            sql: DS_RETURNS,
            candidates: [
                (Truth::Good, DS_RETURNS_GOOD),
                (Truth::Wrong("changed comparison"), DS_RETURNS_BOUNDARY),
                (
                    Truth::Broken,
                    "select supp, revenue from supplier_revenue order by supp limit 100",
                ),
                (Truth::NoOp, DS_RETURNS),
            ],
        },
        Case {
            name: "TPC-DS-style buyers (DISTINCT join)",
            marker: "c_acctbal > 5000",
            sql: DS_BUYERS,
            candidates: [
                (Truth::Wrong("lost DISTINCT"), DS_BUYERS_NO_DISTINCT),
                (Truth::Good, DS_BUYERS_SEMI),
                (Truth::Wrong("changed join type"), DS_BUYERS_LEFT),
                (Truth::NoOp, DS_BUYERS),
            ],
        },
        Case {
            name: "TPC-H Q6",
            marker: "l_discount between 0.05 and 0.07",
            sql: Q6,
            candidates: [
                (
                    Truth::NoOp,
                    "select sum(l_extendedprice * l_discount) as revenue from lineitem \
                     where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
                     and l_discount >= 0.05 and l_discount <= 0.07 and l_quantity < 24",
                ),
                (
                    Truth::Wrong("dropped predicate"),
                    "select sum(l_extendedprice * l_discount) as revenue from lineitem \
                     where l_shipdate >= date '1994-01-01' and l_discount between 0.05 and 0.07 \
                     and l_quantity < 24",
                ),
                (Truth::Broken, "I cannot improve this query."),
                (
                    Truth::Slower,
                    "select sum(l_extendedprice * l_discount) as revenue from \
                     (select * from lineitem order by l_comment) l \
                     where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
                     and l_discount between 0.05 and 0.07 and l_quantity < 24",
                ),
            ],
        },
    ]
}

fn script() -> Vec<ScriptedAnswer> {
    let mut answers = Vec::new();
    for case in cases() {
        for (prompt, (_, sql)) in PROMPT_MARKERS.iter().zip(case.candidates) {
            let fenced = if sql.starts_with("I cannot") {
                sql.to_owned()
            } else {
                format!("Rewritten:\n```sql\n{sql}\n```")
            };
            answers.push(ScriptedAnswer {
                when: vec![(*prompt).to_owned(), case.marker.to_owned()],
                answer: fenced,
            });
        }
    }
    answers
}

const SCHEMA: [(&str, &str); 8] = [
    ("region", "r_regionkey BIGINT NOT NULL, r_name VARCHAR NOT NULL, r_comment VARCHAR NOT NULL"),
    ("nation", "n_nationkey BIGINT NOT NULL, n_name VARCHAR NOT NULL, n_regionkey BIGINT NOT NULL, n_comment VARCHAR NOT NULL"),
    ("part", "p_partkey BIGINT NOT NULL, p_name VARCHAR NOT NULL, p_mfgr VARCHAR NOT NULL, p_brand VARCHAR NOT NULL, p_type VARCHAR NOT NULL, p_size INT NOT NULL, p_container VARCHAR NOT NULL, p_retailprice DECIMAL(15,2) NOT NULL, p_comment VARCHAR NOT NULL"),
    ("supplier", "s_suppkey BIGINT NOT NULL, s_name VARCHAR NOT NULL, s_address VARCHAR NOT NULL, s_nationkey BIGINT NOT NULL, s_phone VARCHAR NOT NULL, s_acctbal DECIMAL(15,2) NOT NULL, s_comment VARCHAR NOT NULL"),
    ("partsupp", "ps_partkey BIGINT NOT NULL, ps_suppkey BIGINT NOT NULL, ps_availqty INT NOT NULL, ps_supplycost DECIMAL(15,2) NOT NULL, ps_comment VARCHAR NOT NULL"),
    ("customer", "c_custkey BIGINT NOT NULL, c_name VARCHAR NOT NULL, c_address VARCHAR NOT NULL, c_nationkey BIGINT NOT NULL, c_phone VARCHAR NOT NULL, c_acctbal DECIMAL(15,2) NOT NULL, c_mktsegment VARCHAR NOT NULL, c_comment VARCHAR NOT NULL"),
    ("orders", "o_orderkey BIGINT NOT NULL, o_custkey BIGINT NOT NULL, o_orderstatus VARCHAR NOT NULL, o_totalprice DECIMAL(15,2) NOT NULL, o_orderdate DATE NOT NULL, o_orderpriority VARCHAR NOT NULL, o_clerk VARCHAR NOT NULL, o_shippriority INT NOT NULL, o_comment VARCHAR NOT NULL"),
    ("lineitem", "l_orderkey BIGINT NOT NULL, l_partkey BIGINT NOT NULL, l_suppkey BIGINT NOT NULL, l_linenumber INT NOT NULL, l_quantity DECIMAL(15,2) NOT NULL, l_extendedprice DECIMAL(15,2) NOT NULL, l_discount DECIMAL(15,2) NOT NULL, l_tax DECIMAL(15,2) NOT NULL, l_returnflag VARCHAR NOT NULL, l_linestatus VARCHAR NOT NULL, l_shipdate DATE NOT NULL, l_commitdate DATE NOT NULL, l_receiptdate DATE NOT NULL, l_shipinstruct VARCHAR NOT NULL, l_shipmode VARCHAR NOT NULL, l_comment VARCHAR NOT NULL"),
];

/// The table's rows in TPC-H's `|`-separated format, without the trailing `|`.
fn table_lines(table: &str, sf: f64) -> Vec<String> {
    use tpchgen::generators::*;
    let strip = |line: String| line.trim_end_matches('|').to_owned();
    match table {
        "region" => RegionGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "nation" => NationGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "part" => PartGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "supplier" => SupplierGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "partsupp" => PartSuppGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "customer" => CustomerGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "orders" => OrderGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        "lineitem" => LineItemGenerator::new(sf, 1, 1)
            .iter()
            .map(|r| strip(r.to_string()))
            .collect(),
        other => panic!("no table {other}"),
    }
}

async fn load(client: &Client, dir: &std::path::Path, sf: f64) {
    for (table, columns) in SCHEMA {
        let path = dir.join(format!("{table}.tbl"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let lines = table_lines(table, sf);
        for line in &lines {
            writeln!(file, "{line}").unwrap();
        }
        file.flush().unwrap();
        drop(file);
        let loose = columns.replace(" NOT NULL", "");
        client
            .batch_execute(&format!(
                "CREATE EXTERNAL TABLE {table}_tbl ({loose}) STORED AS CSV LOCATION '{}' \
                 OPTIONS ('format.delimiter' '|', 'format.has_header' 'false')",
                path.display()
            ))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e:?}"));
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} ({columns}); INSERT INTO {table} SELECT * FROM {table}_tbl; \
                 DROP TABLE {table}_tbl"
            ))
            .await
            .unwrap_or_else(|e| panic!("{table}: {e:?}"));
        eprintln!("loaded {table}: {} rows", lines.len());
    }
}

/// Connects with the server's NOTICEs collected.
async fn connect(port: u16) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=bench dbname=semsql"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notice(notice)) => {
                    sink.lock().unwrap().push(notice.message().to_owned())
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

async fn timed(client: &Client, sql: &str) -> f64 {
    let start = Instant::now();
    client.simple_query(sql).await.expect("query runs");
    start.elapsed().as_secs_f64() * 1000.0
}

/// The median speedup of `candidate` over `original` in 5 interleaved pairs after a warm-up.
async fn remeasure(client: &Client, original: &str, candidate: &str) -> f64 {
    timed(client, original).await;
    timed(client, candidate).await;
    let (mut speedups, mut originals, mut candidates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let o = timed(client, original).await;
        let c = timed(client, candidate).await;
        speedups.push(o / c);
        originals.push(o);
        candidates.push(c);
    }
    for values in [&mut speedups, &mut originals, &mut candidates] {
        values.sort_by(f64::total_cmp);
    }
    eprintln!(
        "  re-measured over the wire: original {:.1} ms, candidate {:.1} ms (medians)",
        originals[2], candidates[2]
    );
    speedups[2]
}

fn number_after(text: &str, label: &str) -> f64 {
    text.split(label)
        .next()
        .and_then(|before| before.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

fn geometric_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 1.0;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

#[tokio::main]
async fn main() {
    let sf: f64 = std::env::var("SEMSQL_BENCH_SF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.3);
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            answers: script(),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let server = support::start().await;
    let port = server.port;
    let (client, notices) = connect(port).await;
    let data = tempfile::tempdir().unwrap();
    let load_started = Instant::now();
    load(&server.client, data.path(), sf).await;
    eprintln!(
        "loaded TPC-H at scale {sf} in {:.1} s",
        load_started.elapsed().as_secs_f64()
    );
    client
        .batch_execute(&format!(
            "CREATE MODEL scripted WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16); \
             SET semsql.model = 'scripted'",
            fake.base_url()
        ))
        .await
        .unwrap();

    println!("| query | candidates (good / wrong / broken / no-op / slower) | accepted | chosen | speedup (search) | speedup (re-measured) | false accepts | false rejects | requests | tokens | search s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let (mut productive, mut all_speedups) = (Vec::new(), Vec::new());
    let (mut false_accepts, mut false_rejects, mut regressions) = (0, 0, 0);
    let (mut requests, mut tokens, mut seconds) = (0.0, 0.0, 0.0);
    let mut known_good_fast = 0;
    let mut known_good_fast_accepted = 0;
    for case in cases() {
        notices.lock().unwrap().clear();
        let messages = client
            .simple_query(&format!("EXPLAIN REWRITE {}", case.sql))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let rows: Vec<Vec<String>> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..8)
                        .map(|i| row.get(i).unwrap_or("").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        let summary = notices.lock().unwrap().join("\n");
        let (case_requests, case_tokens, case_seconds) = (
            number_after(&summary, " LM requests"),
            number_after(&summary, " tokens"),
            summary
                .split("tokens, ")
                .nth(1)
                .map_or(0.0, |rest| number_after(rest, " s")),
        );
        requests += case_requests;
        tokens += case_tokens;
        seconds += case_seconds;
        let mut accepted = 0;
        let mut case_false_rejects = 0;
        let mut chosen = None;
        let mut chosen_speedup = None;
        for (index, (truth, sql)) in case.candidates.iter().enumerate() {
            let row = &rows[index + 1];
            let verdict = row[2].as_str();
            let is_accepted = matches!(verdict, "proven" | "chosen" | "tested" | "fastest tested");
            eprintln!(
                "{} #{}: {:?} → {verdict}: {} [search: original {} ms, candidate {} ms]",
                case.name,
                index + 1,
                truth,
                row[3],
                rows[0][5],
                row[5]
            );
            if is_accepted {
                accepted += 1;
                if matches!(truth, Truth::Wrong(_) | Truth::Broken) {
                    false_accepts += 1;
                }
            }
            if verdict == "fastest tested" || verdict == "chosen" {
                chosen = Some((index, *truth, *sql));
                chosen_speedup = row[6].parse::<f64>().ok();
            }
            if *truth == Truth::Good {
                let really = remeasure(&client, case.sql, sql).await;
                eprintln!("  re-measured speedup {really:.2}×");
                if really >= 1.5 {
                    known_good_fast += 1;
                    if is_accepted {
                        known_good_fast_accepted += 1;
                    } else {
                        false_rejects += 1;
                        case_false_rejects += 1;
                    }
                }
            }
        }
        let remeasured = match chosen {
            Some((_, _, sql)) => {
                let speedup = remeasure(&client, case.sql, sql).await;
                if speedup < 1.0 {
                    regressions += 1;
                }
                productive.push(speedup);
                speedup
            }
            None => 1.0,
        };
        all_speedups.push(remeasured);
        let counts =
            |wanted: fn(&Truth) -> bool| case.candidates.iter().filter(|(t, _)| wanted(t)).count();
        println!(
            "| {} | {} / {} / {} / {} / {} | {} | {} | {} | {:.2}× | {} | {} | {} | {} | {:.1} |",
            case.name,
            counts(|t| *t == Truth::Good),
            counts(|t| matches!(t, Truth::Wrong(_))),
            counts(|t| *t == Truth::Broken),
            counts(|t| *t == Truth::NoOp),
            counts(|t| *t == Truth::Slower),
            accepted,
            chosen.map_or("none".to_owned(), |(i, t, _)| format!(
                "#{} ({:?})",
                i + 1,
                t
            )),
            chosen_speedup.map_or("–".to_owned(), |s| format!("{s:.2}×")),
            remeasured,
            rows.iter()
                .skip(1)
                .zip(case.candidates.iter())
                .filter(|(row, (truth, _))| {
                    matches!(
                        row[2].as_str(),
                        "proven" | "chosen" | "tested" | "fastest tested"
                    ) && matches!(truth, Truth::Wrong(_) | Truth::Broken)
                })
                .count(),
            case_false_rejects,
            case_requests,
            case_tokens,
            case_seconds
        );
    }
    println!();
    println!(
        "Total over {} queries: {} productive; speedup geometric mean {:.2}× over the productive \
         queries and {:.2}× over all (rejected = 1.0); {} regressions; {} false accepts; {} false \
         rejects ({} of {} known-good rewrites that re-measure ≥ 1.5× were accepted); overhead {} \
         LM requests, {} tokens, {:.1} s of search.",
        all_speedups.len(),
        productive.len(),
        geometric_mean(&productive),
        geometric_mean(&all_speedups),
        regressions,
        false_accepts,
        false_rejects,
        known_good_fast_accepted,
        known_good_fast,
        requests,
        tokens,
        seconds
    );
    println!(
        "(TPC-H scale {sf}; fake model at 127.0.0.1 with scripted answers; {} chat requests seen.)",
        fake.stats().chat_requests
    );
}
