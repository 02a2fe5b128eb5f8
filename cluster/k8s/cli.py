"""`qwen-cluster render k8s`: render the KubeRay manifests from the config, validate, write or check.

    qwen-cluster render k8s --profile gpu --out infra/kuberay/            # render, validate, write
    qwen-cluster render k8s --profile gpu --out infra/kuberay/ --check    # validate + compare bytes

Each environment is written to its own folder (`<out>/default`, `<out>/dev`, `<out>/prod`); the
checked-in Grafana dashboard in the monitoring folder is validated with them. Manifests that fail
validation are never written. `--check` writes nothing and fails when the committed files differ
from a fresh rendering, when a file the rendering no longer makes is left, or when anything does
not validate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cluster.cli import EXIT_FAILURE, EXIT_OK, add_config_arguments, config_from_args
from cluster.k8s.groups import K8sRenderError
from cluster.k8s.monitoring import DASHBOARD_FILE
from cluster.k8s.render import KUBERAY, MONITORING, render_all
from cluster.k8s.schemas import default_crd_dir, load_crds, project_root, vendored_crd_dir

PLACEHOLDER_IMAGE_OWNER = "/your-org/"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `render k8s` to the `qwen-cluster` command line."""
    render = subparsers.add_parser("render", help="Render deployment manifests from the cluster config.")
    targets = render.add_subparsers(dest="render_target", required=True, metavar="TARGET")
    k8s = targets.add_parser(
        "k8s",
        help="KubeRay manifests (RayService, RayJob, RayCronJob) per environment, and monitoring.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(k8s, default_profile="gpu")
    k8s.add_argument("--out", type=Path, required=True, help="KubeRay folder, e.g. infra/kuberay/.")
    k8s.add_argument("--monitoring-out", type=Path, help="Monitoring folder (default: <out>/../monitoring).")
    k8s.add_argument("--crds", type=Path, help=f"KubeRay CRD folder (default: {default_crd_dir()}).")
    k8s.add_argument(
        "--check", action="store_true", help="Write nothing; fail if files differ or do not validate."
    )
    k8s.set_defaults(handler=run_render_k8s)


def project_dashboard_path() -> Path:
    """The Grafana dashboard as the project keeps it."""
    return project_root() / "infra" / MONITORING / DASHBOARD_FILE


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def run_render_k8s(args: argparse.Namespace) -> int:
    """Run `render k8s`; returns the exit code (0 ok; 1 invalid, stale, or a config that cannot render)."""
    config = config_from_args(args)
    started = time.perf_counter()
    try:
        files = render_all(config)
    except K8sRenderError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILURE
    print(f"rendered {len(files)} files in {time.perf_counter() - started:.2f}s")
    if PLACEHOLDER_IMAGE_OWNER in config.kubernetes.image:
        print(
            f"warning: kubernetes.image is the placeholder {config.kubernetes.image}; set your registry's image"
        )
    monitoring_dir = args.monitoring_out or args.out.parent / MONITORING
    crd_dir = args.crds or default_crd_dir()
    report = None
    if crd_dir.is_dir():
        from cluster.k8s.validation import validate_rendered

        started = time.perf_counter()
        # The dashboard is written by hand and kept in the project's infra/monitoring/; a copy in the
        # output folder (edited there) wins. A missing one reads as empty, which fails its check.
        dashboard = _read(monitoring_dir / DASHBOARD_FILE) or _read(project_dashboard_path()) or "{}"
        try:
            report = validate_rendered(
                {**files, f"{MONITORING}/{DASHBOARD_FILE}": dashboard}, load_crds(crd_dir, vendored_crd_dir())
            )
        except ModuleNotFoundError as error:
            print(f"{error.name} is missing: pip install 'qwen-cluster[k8s]' to validate", file=sys.stderr)
            return EXIT_FAILURE
        print(
            f"validated {report.files} files: {report.tally.documents} distinct resources against schemas "
            f"({report.tally.cel_rules} CEL rules), {report.cross_checked} sets cross-checked, "
            f"{len(report.problems)} problems in {time.perf_counter() - started:.2f}s"
        )
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    elif args.check:
        print(f"KubeRay CRDs not found in {crd_dir}; pass --crds", file=sys.stderr)
        return EXIT_FAILURE
    else:
        print(f"warning: KubeRay CRDs not found in {crd_dir}; manifests NOT validated", file=sys.stderr)
    placed: dict[Path, str] = {}
    for path, text in files.items():
        top, _, rest = path.partition("/")
        placed[(args.out if top == KUBERAY else monitoring_dir) / rest] = text
    changed = [path for path, text in sorted(placed.items()) if _read(path) != text]
    # Anything under <out> that a fresh rendering does not make is left over (an old environment).
    extra = [str(p) for p in sorted(args.out.rglob("*")) if p.is_file() and p not in placed]
    if args.check:
        for path in [*map(str, changed), *extra]:
            print(f"  out of date: {path} (re-run without --check)", file=sys.stderr)
        ok = not changed and not extra and report is not None and report.ok
        print("check passed" if ok else "check FAILED")
        return EXIT_OK if ok else EXIT_FAILURE
    if report is not None and not report.ok:
        print("not writing manifests that fail validation", file=sys.stderr)
        return EXIT_FAILURE
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(placed[path], encoding="utf-8")
    print(f"wrote {len(changed)} changed files ({len(placed) - len(changed)} unchanged)")
    for path in extra:
        print(f"warning: {path} is not rendered any more; delete it", file=sys.stderr)
    return EXIT_OK
