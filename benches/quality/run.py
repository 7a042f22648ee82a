"""The quality benchmark: semsql's semantic functions against a real model on labelled rows.

Loads the labelled sets of `data/` (written for this benchmark; no label comes from a model)
into a running semsql server, and for each structured-output mode and batch size asks the model
about every row through SQL, as a user would. Reports, per task and setting, accuracy, requests,
tokens and wall time, and how often a batched answer equals the one-row answer of the same mode.

    python benches/quality/run.py --dsn "host=127.0.0.1 port=5499 user=semsql dbname=semsql" \
        --base-url http://127.0.0.1:8089/v1 --model qwen-1.5b \
        --sizes 1,4,8,16 --modes json_schema,json_object,none --out results.json

Needs psycopg 3. The model server must be up (scripts/real-model.sh start). Answers the model
gets wrong in shape become NULL (semsql.on_llm_error = 'null') and count as wrong.
"""

import argparse
import csv
import json
import os
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))

# task: (query over table q_<task> with columns id, label, text; how an answer is scored)
TASKS = {
    "filter_refund": (
        "SELECT id, llm_filter('Does this review mention a refund? {0}', text) FROM q_filter_refund",
        lambda answer, row: answer is not None and answer == (row["label"] == "true"),
    ),
    "filter_shipping": (
        "SELECT id, llm_filter('Does this review complain about shipping or delivery? {0}', text) "
        "FROM q_filter_shipping",
        lambda answer, row: answer is not None and answer == (row["label"] == "true"),
    ),
    "classify_ticket": (
        "SELECT id, llm_classify(text, ARRAY['billing', 'shipping', 'technical', 'account'], "
        "'Which team should handle this support ticket? {0}') FROM q_classify_ticket",
        lambda answer, row: answer == row["label"],
    ),
    "extract_order": (
        "SELECT id, e['quantity'] || '|' || e['city'] FROM (SELECT id, llm_extract("
        "'From this order message, the number of items ordered and the city they go to: {0}', "
        "text, 'quantity int, city text') AS e FROM q_extract_order) t",
        lambda answer, row: answer is not None
        and answer.split("|", 1)[0] == row["quantity"]
        and answer.split("|", 1)[1].strip().lower() == row["city"].lower(),
    ),
    "score_sentiment": (
        "SELECT id, llm_score('How positive is this review? {0}', text) FROM q_score_sentiment",
        # Labels are 0 (negative), 0.5 (mixed) and 1 (positive): right when nearest.
        lambda answer, row: answer is not None and abs(answer - float(row["label"])) < 0.25,
    ),
}


def load(connection):
    rows = {}
    with connection.cursor() as cursor:
        for task in TASKS:
            with open(os.path.join(HERE, "data", f"{task}.tsv"), newline="") as file:
                records = list(csv.DictReader(file, delimiter="\t"))
            rows[task] = {i: record for i, record in enumerate(records)}
            cursor.execute(f"DROP TABLE IF EXISTS q_{task}")
            cursor.execute(f"CREATE TABLE q_{task} (id int, text text)")
            with cursor.copy(f"COPY q_{task} (id, text) FROM STDIN") as copy:
                for i, record in rows[task].items():
                    copy.write_row((i, record["text"]))
    return rows


def run(connection, args, mode, size, task):
    sql, correct = TASKS[task]
    with connection.cursor() as cursor:
        cursor.execute("DROP MODEL IF EXISTS quality")
        cursor.execute(
            "CREATE MODEL quality WITH (base_url = %s, model = %s, rows_per_request = %s, "
            "structured_output = %s, concurrency = 1, timeout_ms = 900000, max_retries = 2)"
            .replace("%s", "'{}'").format(args.base_url, args.model, size, mode)
        )
        cursor.execute("SET semsql.model = 'quality'")
        cursor.execute("SET semsql.cache = 'off'")
        cursor.execute("SET semsql.on_llm_error = 'null'")
        cursor.execute("SET semsql.progress_interval_ms = 0")
        started = time.monotonic()
        cursor.execute(sql)
        answers = dict(cursor.fetchall())
        seconds = time.monotonic() - started
        cursor.execute(
            "SELECT requests, input_tokens, output_tokens, retries FROM semsql.llm_queries "
            "WHERE models = 'quality' ORDER BY query_id DESC LIMIT 1"
        )
        requests, input_tokens, output_tokens, retries = cursor.fetchone()
    return {
        "mode": mode,
        "rows_per_request": size,
        "task": task,
        "answers": {str(i): answer for i, answer in answers.items()},
        "seconds": round(seconds, 1),
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "retries": retries,
        "correct": None,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--modes", default="json_schema,json_object,none")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", default="quality-results.json")
    args = parser.parse_args()
    connection = psycopg.connect(args.dsn, autocommit=True)
    rows = load(connection)
    results = []
    if os.path.exists(args.out):
        results = json.load(open(args.out))
    done = {(r["mode"], str(r["rows_per_request"]), r["task"]) for r in results}
    for mode in args.modes.split(","):
        for size in args.sizes.split(","):
            for task in args.tasks.split(","):
                if (mode, size, task) in done:
                    continue
                result = run(connection, args, mode, size, task)
                result["correct"] = sum(
                    bool(TASKS[task][1](result["answers"].get(str(i)), row))
                    for i, row in rows[task].items()
                )
                result["rows"] = len(rows[task])
                results.append(result)
                print(
                    f"{mode:12} rows/request {size:>4} {task:16} "
                    f"{result['correct']:3}/{result['rows']} correct, "
                    f"{result['requests']:3} requests, "
                    f"{result['input_tokens'] + result['output_tokens']:6} tokens, "
                    f"{result['seconds']:7.1f} s",
                    flush=True,
                )
                with open(args.out, "w") as file:
                    json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
