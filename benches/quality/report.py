"""Prints the quality benchmark's results (run.py's JSON) as Markdown tables: per setting,
accuracy over every row, requests, tokens, wall time, and agreement with the one-row answers of
the same output mode; then accuracy per task.

    python benches/quality/report.py results.json
"""

import json
import sys
from collections import defaultdict


def order(setting):
    (mode, size), _ = setting
    return (mode, int(size) if size.isdigit() else 1000)


def main():
    results = json.load(open(sys.argv[1]))
    by_setting = defaultdict(dict)
    for result in results:
        by_setting[(result["mode"], str(result["rows_per_request"]))][result["task"]] = result
    tasks = sorted({result["task"] for result in results})
    print("| output mode | rows/request | correct | accuracy | requests | input + output tokens "
          "| wall time | agrees with 1 row/request |")
    print("|---|---|---|---|---|---|---|---|")
    for (mode, size), runs in sorted(by_setting.items(), key=order):
        correct = sum(run["correct"] for run in runs.values())
        rows = sum(run["rows"] for run in runs.values())
        requests = sum(run["requests"] for run in runs.values())
        tokens = sum(run["input_tokens"] + run["output_tokens"] for run in runs.values())
        seconds = sum(run["seconds"] for run in runs.values())
        reference = by_setting.get((mode, "1"), {})
        same = compared = 0
        for task, run in runs.items():
            if task not in reference:
                continue
            for row, answer in run["answers"].items():
                compared += 1
                same += answer == reference[task]["answers"].get(row)
        agreement = f"{same / compared:.1%}" if compared and size != "1" else "—"
        partial = "" if len(runs) == len(tasks) else f" ({len(runs)} of {len(tasks)} tasks)"
        print(f"| {mode} | {size} | {correct}/{rows}{partial} | {correct / rows:.1%} | {requests} "
              f"| {tokens} | {seconds:.0f} s | {agreement} |")
    print()
    print("| output mode | rows/request | " + " | ".join(tasks) + " |")
    print("|---|---|" + "---|" * len(tasks))
    for (mode, size), runs in sorted(by_setting.items(), key=order):
        cells = [
            f"{runs[task]['correct']}/{runs[task]['rows']}" if task in runs else "—"
            for task in tasks
        ]
        print(f"| {mode} | {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
