"""The base kustomization and the dev/prod overlays (each a set of JSON patches on the base)."""

from __future__ import annotations

from typing import Any

from cluster.k8s.patches import json_patch_diff

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


def kustomization(
    namespace: str, resources: list[str], patches: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Kustomization document."""
    data: dict[str, Any] = {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": list(resources),
    }
    if patches:
        data["patches"] = patches
    return data


def patch_target(document: dict[str, Any]) -> dict[str, str]:
    """The `target` selecting `document` in a kustomization patch entry."""
    group, _, version = document["apiVersion"].rpartition("/")
    target = {"group": group} if group else {}
    target.update({"version": version, "kind": document["kind"], "name": document["metadata"]["name"]})
    return target


def patch_file_name(document: dict[str, Any]) -> str:
    """`patch.<kind>.<name>.yaml`."""
    return f"patch.{document['kind'].lower()}.{document['metadata']['name']}.yaml"


def overlay_patches(
    base: dict[str, list[dict[str, Any]]], overlay: dict[str, list[dict[str, Any]]], resources: list[str]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(base document, JSON patch) for every kustomized document the overlay changes.

    Args:
        base: documents of each rendered file, from the base config.
        overlay: documents of each rendered file, from the overlay's config.
        resources: the files the base kustomization lists.
    """
    changes = []
    for path in resources:
        for base_doc, overlay_doc in zip(base[path], overlay[path], strict=True):
            ops = json_patch_diff(base_doc, overlay_doc)
            if ops:
                changes.append((base_doc, ops))
    return changes
