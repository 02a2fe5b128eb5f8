"""Build training/router/data/public.jsonl.gz from public per-question results.

    python training/router/build_public.py --mirror /path/to/snapshots

`--mirror` holds bare git snapshots of the repositories that public_sources.yaml names, each as
`owner+name/repo`; files are read at the commit the YAML pins. Rows whose question is one of an
evaluation set's (the YAML's `exclusions`) are dropped; malformed rows are skipped and counted. The
report (kept, skipped, dropped) is printed and written to data/public_build_report.txt.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from pipelines.router_training import public_sources as readers
from pipelines.router_training.public_table import BuildReport, Exclusion, PublicRow, save_table

HERE = Path(__file__).parent


def git_file(mirror: Path, repo: str, commit: str, path: str) -> bytes:
    """One file of a pinned commit of a snapshot."""
    git_dir = mirror / repo.replace("/", "+") / "repo"
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def _json_records(data: bytes, path: str) -> list:
    if path.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".json"))
            data = archive.read(name)
    if path.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    return json.loads(data)


def exclusion_questions(mirror: Path, exclusions: dict) -> dict[str, list[str]]:
    """Every evaluation set's question texts (MT-Bench: every turn)."""
    out = {}
    for name, spec in exclusions.items():
        records = _json_records(git_file(mirror, spec["repo"], spec["commit"], spec["file"]), spec["file"])
        texts = []
        for record in records:
            value = record[spec["field"]]
            texts += [str(v) for v in value] if isinstance(value, list) else [str(value)]
        out[name] = texts
    return out


def source_answers(mirror: Path, name: str, spec: dict, report: BuildReport) -> dict[str, dict]:
    """Model -> question key -> `Answer` for one source."""
    kind, models = spec["kind"], spec["models"]
    read = lambda path: git_file(mirror, spec["repo"], spec["commit"], path)  # noqa: E731
    answers: dict[str, dict] = {}
    if kind == "llmrouter_dc":
        for path in spec["files"]:
            for model, got in readers.llmrouter_dc(_json_records(read(path), path), models, name, report).items():
                answers.setdefault(model, {}).update(got)
        return answers
    for model, entry in models.items():
        try:
            data = read(entry["file"])
        except subprocess.CalledProcessError:
            report.skip(name, f"file missing for {model}")
            continue
        if kind == "mmlu_pro":
            answers[model] = readers.mmlu_pro(_json_records(data, entry["file"]), name, report)
        elif kind == "zeroeval_crux":
            answers[model] = readers.zeroeval_crux(_json_records(data, entry["file"]), name, report)
        elif kind == "home_assistant_csv":
            answers[model] = readers.home_assistant_csv(data.decode(), model, name, report)
        else:
            raise ValueError(f"unknown source kind {kind!r}")
    return answers


def build(mirror: Path, config: dict, min_models: int = 2) -> tuple[list[PublicRow], dict, BuildReport]:
    """Rows, the model table and the report."""
    report = BuildReport()
    exclusion = Exclusion(exclusion_questions(mirror, config["exclusions"]))
    rows: list[PublicRow] = []
    models: dict[str, dict] = {}
    for name, spec in config["sources"].items():
        answers = source_answers(mirror, name, spec, report)
        for model in answers:
            models[model] = {k: spec["models"][model][k] for k in ("family", "size")}
        keys = sorted({key for got in answers.values() for key in got})
        for key in keys:
            graded = {m: got[key] for m, got in answers.items() if key in got}
            if len(graded) < min_models:
                report.skip(name, f"answered by fewer than {min_models} models")
                continue
            first = next(iter(graded.values()))
            matched = exclusion.match(first.prompt)
            if matched is not None:
                report.excluded[(name, matched)] += 1
                continue
            rows.append(
                PublicRow(
                    id=f"{name}:{key[:80]}",
                    source=name,
                    group=first.group,
                    prompt=first.prompt,
                    correct={m: a.correct for m, a in graded.items()},
                    tools=first.tools,
                )
            )
            report.kept[name] += 1
    return rows, models, report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True, help="folder of owner+name/repo snapshots")
    parser.add_argument("--config", type=Path, default=HERE / "public_sources.yaml")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "public.jsonl.gz")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    rows, models, report = build(args.mirror, config)
    save_table(rows, args.out)
    (args.out.parent / "public_models.json").write_text(json.dumps(models, indent=1, sort_keys=True) + "\n")
    lines = [*report.lines(), f"rows written: {len(rows)} to {args.out.name}"]
    (args.out.parent / "public_build_report.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
