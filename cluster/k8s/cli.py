"""`qwen-cluster render k8s`: render the KubeRay manifests from the config, validate, write or check.

    qwen-cluster render k8s --profile gpu --out infra/kuberay/            # render, validate, write
    qwen-cluster render k8s --profile gpu --out infra/kuberay/ --check    # validate + compare bytes

Manifests that fail validation are never written. `--check` writes nothing and fails when the
committed files differ from a fresh rendering or do not validate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cluster.config import PROFILES, ConfigError, load_config
from cluster.k8s.groups import K8sRenderError
from cluster.k8s.layout import BASE, KUBERAY, MONITORING, OVERLAYS
from cluster.k8s.render import render_all, split_destinations, stale_files, write_files
from cluster.k8s.schema import default_crd_dir, load_crds
from cluster.k8s.validation import ValidationReport, validate_rendered

PLACEHOLDER_IMAGE_OWNER = "/your-org/"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `render k8s` to the `qwen-cluster` command line."""
    render = subparsers.add_parser("render", help="Render deployment manifests from the cluster config.")
    targets = render.add_subparsers(dest="render_target", required=True, metavar="TARGET")
    k8s = targets.add_parser(
        "k8s",
        help="KubeRay manifests (RayService, RayJob, RayCronJob), kustomize overlays, monitoring.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = k8s.add_mutually_exclusive_group()
    source.add_argument("--profile", choices=PROFILES, help="Shipped profile to render (default: gpu).")
    source.add_argument("--config", type=Path, help="Cluster config YAML file to render.")
    k8s.add_argument("--out", type=Path, required=True, help="KubeRay folder, e.g. infra/kuberay/.")
    k8s.add_argument(
        "--monitoring-out", type=Path, default=None, help="Monitoring folder (default: <out>/../monitoring)."
    )
    k8s.add_argument(
        "--crds", type=Path, default=None, help=f"KubeRay CRD folder (default: {default_crd_dir()})."
    )
    k8s.add_argument(
        "--check", action="store_true", help="Write nothing; fail if files differ or do not validate."
    )
    k8s.set_defaults(handler=run_render_k8s)


def _summary(report: ValidationReport, seconds: float) -> str:
    tally = report.tally
    return (
        f"validated {report.files} files: {tally.documents} resources against schemas "
        f"({tally.nodes} fields, {tally.cel_rules} CEL rules), {tally.cross_checks} cross-checks, "
        f"{len(report.problems)} problems in {seconds:.2f}s"
    )


def _extra_files(kuberay_dir: Path, expected: set[Path]) -> list[str]:
    """Rendered-looking files on disk that a fresh rendering no longer produces."""
    found = []
    for folder in (
        kuberay_dir / BASE.removeprefix(f"{KUBERAY}/"),
        kuberay_dir / OVERLAYS.removeprefix(f"{KUBERAY}/"),
    ):
        if folder.is_dir():
            found += [str(p) for p in sorted(folder.rglob("*.yaml")) if p not in expected]
    return found


def run_render_k8s(args: argparse.Namespace) -> int:
    """Run `render k8s`; returns the process exit code (0 ok, 1 invalid or stale, 2 usage/config error)."""
    try:
        config = load_config(args.config, profile=None if args.config else (args.profile or "gpu"))
        started = time.perf_counter()
        files = render_all(config)
        rendered_s = time.perf_counter() - started
    except (ConfigError, K8sRenderError) as error:
        print(error, file=sys.stderr)
        return 2
    print(f"rendered {len(files)} files in {rendered_s:.2f}s")
    if PLACEHOLDER_IMAGE_OWNER in config.kubernetes.image:
        print(
            f"warning: kubernetes.image is the placeholder {config.kubernetes.image}; set your registry's image"
        )
    crd_dir = args.crds or default_crd_dir()
    report = None
    if crd_dir.is_dir():
        started = time.perf_counter()
        report = validate_rendered(files, load_crds(crd_dir))
        print(_summary(report, time.perf_counter() - started))
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    elif args.check:
        print(f"KubeRay CRDs not found in {crd_dir}; pass --crds", file=sys.stderr)
        return 2
    else:
        print(f"warning: KubeRay CRDs not found in {crd_dir}; manifests NOT validated", file=sys.stderr)
    monitoring_dir = args.monitoring_out or args.out.parent / MONITORING
    placed = split_destinations(files, args.out, monitoring_dir)
    if args.check:
        stale = stale_files(placed) + _extra_files(args.out, set(placed))
        for path in stale:
            print(f"  out of date: {path} (re-run without --check)", file=sys.stderr)
        ok = not stale and report is not None and report.ok
        print("check passed" if ok else "check FAILED")
        return 0 if ok else 1
    if report is not None and not report.ok:
        print("not writing manifests that fail validation", file=sys.stderr)
        return 1
    written = write_files(placed)
    print(f"wrote {len(written)} changed files ({len(placed) - len(written)} unchanged)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m cluster.k8s.cli render k8s ...`) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="qwen-cluster")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
