"""PII detection quality and speed, with and without NER, against Presidio's own engine.

    .venv/bin/python bench/pii_eval.py [--data ../shared/data/pii/eval-synthetic.jsonl ...]

Quality, per gold label: recall (a gold span overlapped by some finding), fully masked (every
character of the span covered: what actually keeps the value from leaking) and precision
(findings that overlap a gold span, per detected type). Any JSONL with
``{"text": str, "spans": [{"start", "end", "label", "value"}]}`` lines works.

Speed: p50/p95 of one detection on a 250- and an 8,000-character prompt with the result
cache off (the cost of a new message), beside Presidio's ``AnalyzerEngine`` with its
pattern recognizers and no NLP model, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.pii.detector import Finding, PIIDetector, ner_available  # noqa: E402

DEFAULT_DATA = next(
    (
        base / "pii" / "eval-synthetic.jsonl"
        for base in (ROOT.parent / "shared" / "data", Path("/work/shared/data"))
        if (base / "pii" / "eval-synthetic.jsonl").exists()
    ),
    ROOT.parent / "shared" / "data" / "pii" / "eval-synthetic.jsonl",
)
STRUCTURED = ["EMAIL", "PHONE", "CREDIT_CARD", "US_SSN", "IBAN", "IP_ADDRESS"]
# Detector type -> the gold label it is meant to find, for per-type precision.
TYPE_TO_LABEL = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "US_SSN": "US_SSN",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "ADDRESS": "ADDRESS",
    "LOCATION": "ADDRESS",
    "DATE_TIME": "DOB",
}


def load(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with path.open() as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def quality(detector: PIIDetector, rows: list[dict[str, Any]]) -> dict[str, Any]:
    gold = Counter()
    hit = Counter()
    full = Counter()
    findings_by_type: Counter[str] = Counter()
    true_by_type: Counter[str] = Counter()
    for row in rows:
        text = row["text"]
        found: list[Finding] = detector.detect(text)
        covered = [False] * len(text)
        for f in found:
            for i in range(f.start, f.end):
                covered[i] = True
        for span in row["spans"]:
            label = span["label"]
            gold[label] += 1
            if any(f.start < span["end"] and f.end > span["start"] for f in found):
                hit[label] += 1
            if all(covered[span["start"] : span["end"]]):
                full[label] += 1
        for f in found:
            findings_by_type[f.entity_type] += 1
            if any(f.start < s["end"] and f.end > s["start"] for s in row["spans"]):
                true_by_type[f.entity_type] += 1
    per_label = {
        label: {
            "spans": gold[label],
            "recall": round(hit[label] / gold[label], 4),
            "fully_masked": round(full[label] / gold[label], 4),
        }
        for label in sorted(gold)
    }
    per_type = {
        t: {
            "findings": findings_by_type[t],
            "precision": round(true_by_type[t] / findings_by_type[t], 4),
            "label": TYPE_TO_LABEL.get(t),
        }
        for t in sorted(findings_by_type)
    }
    total = sum(findings_by_type.values())
    return {
        "labels": per_label,
        "types": per_type,
        "precision_overall": round(sum(true_by_type.values()) / total, 4) if total else None,
        "structured_recall_min": min(
            (per_label[label]["recall"] for label in STRUCTURED if label in per_label), default=None
        ),
    }


def prompt_of_length(rows: list[dict[str, Any]], length: int) -> str:
    text = ""
    while len(text) < length:
        for row in rows:
            text += row["text"] + "\n"
            if len(text) >= length:
                break
    return text[:length]


def timings(fn: Any, text: str, runs: int) -> dict[str, float]:
    fn(text)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3),
    }


def presidio_engine() -> Any:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return lambda text: engine.analyze(text, language="en")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "pii.json")
    args = parser.parse_args()
    rows = load(args.data)
    short, long = prompt_of_length(rows, 250), prompt_of_length(rows, 8000)

    report: dict[str, Any] = {"rows": len(rows), "data": [str(p) for p in args.data]}
    variants = [("patterns", False)] + ([("patterns+ner", True)] if ner_available() else [])
    for name, ner in variants:
        detector = PIIDetector(use_ner=ner, cache_size=0)
        report[name] = {
            "quality": quality(detector, rows),
            "latency_250": timings(detector.detect, short, args.runs),
            "latency_8000": timings(detector.detect, long, max(10, args.runs // 5)),
        }
    cached = PIIDetector(use_ner=False)
    report["patterns"]["latency_250_cached"] = timings(cached.detect, short, args.runs)
    presidio = presidio_engine()
    report["presidio_analyzer_no_op"] = {
        "latency_250": timings(presidio, short, args.runs),
        "latency_8000": timings(presidio, long, max(10, args.runs // 5)),
    }

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for name, _ in variants:
        q = report[name]["quality"]
        print(f"\n{name}: precision overall {q['precision_overall']}")
        print(f"  {'label':12s} {'spans':>5s} {'recall':>7s} {'masked':>7s}")
        for label, v in q["labels"].items():
            print(f"  {label:12s} {v['spans']:5d} {v['recall']:7.3f} {v['fully_masked']:7.3f}")
        print(f"  {'type':16s} {'found':>5s} {'precision':>9s}")
        for t, v in q["types"].items():
            print(f"  {t:16s} {v['findings']:5d} {v['precision']:9.3f}")
    print(f"\n{'latency (ms)':28s} {'250 p50':>8s} {'250 p95':>8s} {'8k p50':>8s} {'8k p95':>8s}")
    for name in [v[0] for v in variants] + ["presidio_analyzer_no_op"]:
        r = report[name]
        print(
            f"{name:28s} {r['latency_250']['p50_ms']:8.2f} {r['latency_250']['p95_ms']:8.2f} "
            f"{r['latency_8000']['p50_ms']:8.2f} {r['latency_8000']['p95_ms']:8.2f}"
        )
    cached_ms = report["patterns"]["latency_250_cached"]["p50_ms"]
    print(f"{'patterns, cached message':28s} {cached_ms:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
